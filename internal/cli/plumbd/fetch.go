package plumbd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/plumb-os/plumb/internal/atomicfile"
	"github.com/plumb-os/plumb/internal/cli"
	"github.com/plumb-os/plumb/updater/fetch"
)

type fetchOptions struct {
	repo        string
	root        string
	metadataDir string
	output      string
	ca          string
	target      string
}

func newFetchCmd(e *cli.Env) *cobra.Command {
	var o fetchOptions
	cmd := &cobra.Command{
		Use:   "fetch --repo URL --root ROOT_JSON --metadata-dir DIR --output FILE TARGET",
		Short: "Refresh the TUF metadata and download one verified target",
		Long: `Fetch refreshes the trusted TUF metadata of the repository at URL (its
metadata at URL/metadata/, its targets at URL/targets/), then streams TARGET
(a target path such as qemu-x86_64/2.0.0/rootfs.sqfs) into FILE. FILE
appears only when the target's length and sha256 match the trusted
metadata. Exit code 3 means the repository failed verification.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.target = args[0]
			return runFetch(cmd.Context(), e, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.repo, "repo", "", "base URL of the TUF repository, http:// or https:// (required)")
	f.StringVar(&o.root, "root", "", "trusted root.json, used when the metadata dir has none (required)")
	f.StringVar(&o.metadataDir, "metadata-dir", "", "directory of the trusted metadata, kept between runs (required)")
	f.StringVarP(&o.output, "output", "o", "", "file to write the target to (required)")
	f.StringVar(&o.ca, "ca", "", "PEM bundle of CAs to trust for the repository's TLS (default: the system's)")
	for _, name := range []string{"repo", "root", "metadata-dir", "output"} {
		cmd.MarkFlagRequired(name)
	}
	return cmd
}

func runFetch(ctx context.Context, e *cli.Env, o fetchOptions) error {
	root, err := os.ReadFile(o.root)
	if err != nil {
		return cli.BadInput(fmt.Errorf("--root: %w", err))
	}
	hc := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	if o.ca != "" {
		pem, err := os.ReadFile(o.ca)
		if err != nil {
			return cli.BadInput(fmt.Errorf("--ca: %w", err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return cli.BadInput(fmt.Errorf("--ca %s: expected PEM certificates, found none", o.ca))
		}
		hc.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	c, err := fetch.New(fetch.Options{Repo: o.repo, MetadataDir: o.metadataDir, TrustedRoot: root, HTTPClient: hc, Log: e.Log})
	if err != nil {
		return cli.BadInput(err)
	}
	if err := c.Refresh(ctx); err != nil {
		return err
	}
	n, err := downloadToFile(ctx, c, o.target, o.output)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "%s: %d bytes verified, written to %s\n", o.target, n, o.output)
	return nil
}

// downloadToFile streams the target into a temporary file beside path and
// renames it to path only after verification; a failure leaves no path.
func downloadToFile(ctx context.Context, c *fetch.Client, target, path string) (int64, error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return 0, fmt.Errorf("creating output: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	n, err := c.Download(ctx, target, tmp, nil)
	if err != nil {
		tmp.Close()
		return n, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return n, fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return n, fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return n, fmt.Errorf("writing %s: %w", path, err)
	}
	return n, atomicfile.SyncDir(dir)
}

func init() { cli.RegisterVerification(fetch.ErrVerification) }
