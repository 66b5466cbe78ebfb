package plumb

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/plumb-os/plumb/attest"
	"github.com/plumb-os/plumb/format/attestapi"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/internal/atomicfile"
	"github.com/plumb-os/plumb/internal/cli"
	"github.com/plumb-os/plumb/updater/agent"
	"github.com/plumb-os/plumb/updater/fetch"
)

func init() {
	cli.RegisterBadInput(attestapi.ErrMalformed)
	cli.RegisterVerification(fetch.ErrVerification)
}

func newPlumbAttestCmd(e *cli.Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "attest",
		Short: "Verify TPM attestation evidence from devices",
	}
	cmd.AddCommand(newAttestVerifyCmd(e), newAttestExportCmd(e))
	return cmd
}

type attestVerifyOptions struct {
	evidence string
	repo     string
	root     string
	ca       string
	ekCAs    []string
	nonce    string
	enrolled string
	format   string
	output   string
}

func newAttestVerifyCmd(e *cli.Env) *cobra.Command {
	var o attestVerifyOptions
	cmd := &cobra.Command{
		Use:   "verify EVIDENCE --repo URL|DIR",
		Short: "Check a device's evidence against the published reference values",
		Long: `Verify checks attestation evidence (plumbd attest -o EVIDENCE, format in
format/attestapi/EVIDENCE.md): the EK certificate against the manufacturer CAs
(--ek-ca), the AK's binding to the EK (--enrolled: the enrollments plumb
serve records by credential activation), the quote's signature, its nonce
(--nonce: the one the verifier issued), the UEFI event log and plumb-init's
PCR 15 log replayed against the quoted PCRs, and the measured bootloader,
kernel, initrd, command line, root image and version against the reference
values of the release the device claims, read from the TUF repository (a
URL with --root ROOT_JSON, or a plumb repo DIR, whose own initial root is
then trusted).

It prints a report (Markdown or JSON) with a verdict and one line per check:
passed, failed (expected and actual) or not checkable (why). Exit code 0
when every check passed, 3 when one failed or could not be checked, 2 for
malformed evidence.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.evidence = args[0]
			return runAttestVerify(cmd.Context(), e, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.repo, "repo", "", "TUF repository: a base URL (http:// or https://) or a plumb repo directory (required)")
	f.StringVar(&o.root, "root", "", "trusted root.json of the repository (required for a URL)")
	f.StringVar(&o.ca, "ca", "", "PEM bundle of CAs to trust for the repository's TLS")
	f.StringArrayVar(&o.ekCAs, "ek-ca", nil, "PEM file of TPM manufacturer CA certificates (repeatable; swtpm: /var/lib/swtpm-localca/swtpm-localca-rootca-cert.pem and issuercert.pem)")
	f.StringVar(&o.nonce, "nonce", "", "the nonce (hex) the device was challenged with; without it freshness is not checkable")
	f.StringVar(&o.enrolled, "enrolled", "", "enrollments: a directory of DEVICE.json (plumb serve's) or one JSON file; without it the AK binding is not checkable")
	f.StringVar(&o.format, "format", "md", "report format: md or json")
	f.StringVarP(&o.output, "output", "o", "", "write the report to FILE instead of stdout")
	cmd.MarkFlagRequired("repo")
	return cmd
}

func runAttestVerify(ctx context.Context, e *cli.Env, o attestVerifyOptions) error {
	if o.format != "md" && o.format != "json" {
		return cli.BadInput(fmt.Errorf("--format: expected md or json, got %q", o.format))
	}
	ev, err := readEvidence(o.evidence)
	if err != nil {
		return err
	}
	var nonce []byte
	if o.nonce != "" {
		if nonce, err = hex.DecodeString(o.nonce); err != nil || len(nonce) == 0 {
			return cli.BadInput(fmt.Errorf("--nonce: expected hex digits, got %q", o.nonce))
		}
	}
	opts := attest.VerifierOptions{}
	if len(o.ekCAs) > 0 {
		pool := x509.NewCertPool()
		for _, p := range o.ekCAs {
			b, err := os.ReadFile(p)
			if err != nil {
				return cli.BadInput(fmt.Errorf("--ek-ca: %w", err))
			}
			if !pool.AppendCertsFromPEM(b) {
				return cli.BadInput(fmt.Errorf("--ek-ca %s: expected PEM certificates, found none", p))
			}
		}
		opts.ManufacturerCAs = pool
	}
	if o.enrolled != "" {
		if opts.Enrolled, err = attest.OpenEnrolled(o.enrolled); err != nil {
			return cli.BadInput(fmt.Errorf("--enrolled: %w", err))
		}
	}
	refs, err := referencesFor(ctx, e, o, ev.Release)
	if err != nil {
		return err
	}
	rep := attest.NewVerifier(opts).Verify(ev, nonce, refs)
	var buf bytes.Buffer
	if o.format == "json" {
		err = rep.WriteJSON(&buf)
	} else {
		err = rep.WriteMarkdown(&buf)
	}
	if err != nil {
		return err
	}
	if o.output != "" {
		if err := atomicfile.WriteFile(o.output, buf.Bytes(), 0o644); err != nil {
			return err
		}
	} else if _, err := e.Stdout.Write(buf.Bytes()); err != nil {
		return err
	}
	if rep.Verdict != attest.VerdictPassed {
		msg := "attestation " + rep.Verdict
		if f := rep.Failed(); len(f) > 0 {
			msg += ": " + strings.Join(f, ", ")
		}
		return cli.Verification(errors.New(msg))
	}
	return nil
}

func readEvidence(path string) (*attestapi.Evidence, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, cli.BadInput(err)
	}
	defer f.Close()
	ev, err := attestapi.ParseEvidence(f)
	if err != nil {
		return nil, cli.BadInput(fmt.Errorf("%s: %w", path, err))
	}
	return ev, nil
}

// referencesFor refreshes the repository's TUF metadata and reads the
// reference values of the release the device claims.
func referencesFor(ctx context.Context, e *cli.Env, o attestVerifyOptions, rel attestapi.Release) (attest.References, error) {
	repoURL, root := o.repo, o.root
	if fi, err := os.Stat(o.repo); err == nil && fi.IsDir() {
		// A plumb repo directory: serve its repository/ on loopback for the
		// TUF client, trusting its initial root unless told otherwise.
		url, stop, err := serveDir(filepath.Join(o.repo, "repository"))
		if err != nil {
			return attest.References{}, err
		}
		defer stop()
		repoURL = url
		if root == "" {
			root = filepath.Join(o.repo, "repository", "metadata", "1.root.json")
		}
	} else if root == "" {
		return attest.References{}, cli.BadInput(errors.New("--root: expected the repository's trusted root.json (required with a URL)"))
	}
	rootJSON, err := os.ReadFile(root)
	if err != nil {
		return attest.References{}, cli.BadInput(fmt.Errorf("--root: %w", err))
	}
	hc, err := agent.HTTPClient(o.ca, "", e.Log)
	if err != nil {
		return attest.References{}, cli.BadInput(err)
	}
	metaDir, err := os.MkdirTemp("", "plumb-attest-tuf-*")
	if err != nil {
		return attest.References{}, err
	}
	defer os.RemoveAll(metaDir)
	c, err := fetch.New(fetch.Options{Repo: repoURL, MetadataDir: metaDir, TrustedRoot: rootJSON, HTTPClient: hc, Log: e.Log})
	if err != nil {
		return attest.References{}, cli.BadInput(err)
	}
	if err := c.Refresh(ctx); err != nil {
		return attest.References{}, err
	}
	targets, err := c.Targets()
	if err != nil {
		return attest.References{}, err
	}
	want := release.TargetPath(rel.Hardware, rel.Version)
	for _, t := range targets {
		if t.Path == want {
			refs, err := attest.ReferencesFromFacts(t.Custom)
			if err != nil {
				return attest.References{}, cli.Verification(fmt.Errorf("%s: %w", want, err))
			}
			return refs, nil
		}
	}
	return attest.References{}, cli.Verification(fmt.Errorf("the repository has no release %s for %s (%s): the device claims a release that was not published", rel.Version, rel.Hardware, want))
}

// serveDir serves dir over HTTP on 127.0.0.1 until stop is called.
func serveDir(dir string) (url string, stop func(), err error) {
	if _, err := os.Stat(filepath.Join(dir, "metadata")); err != nil {
		return "", nil, cli.BadInput(fmt.Errorf("--repo: expected a plumb repo directory with repository/metadata: %w", err))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir))}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

type attestExportOptions struct {
	evidence string
	output   string
}

func newAttestExportCmd(e *cli.Env) *cobra.Command {
	var o attestExportOptions
	cmd := &cobra.Command{
		Use:   "export EVIDENCE -o DIR",
		Short: "Write the quote, signature, AK and PCRs in tpm2-tools' formats",
		Long: `Export writes the evidence's quote (quote.msg, TPMS_ATTEST), signature
(quote.sig, TPMT_SIGNATURE), AK (ak.pem) and PCRs (pcrs.bin, tpm2-tools'
serialized PCR format) into DIR, with nonce.hex and checkquote.sh, so the
quote can be checked independently of Plumb:

  tpm2_checkquote -u ak.pem -m quote.msg -s quote.sig -f pcrs.bin -g sha256 -q NONCE_HEX`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.evidence = args[0]
			ev, err := readEvidence(o.evidence)
			if err != nil {
				return err
			}
			if err := attest.Export(ev, o.output); err != nil {
				return err
			}
			fmt.Fprintf(e.Stdout, "exported to %s; check with: sh %s\n", o.output, filepath.Join(o.output, attest.ExportScript))
			return nil
		},
	}
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "directory to write to (required)")
	cmd.MarkFlagRequired("output")
	return cmd
}
