package plumbd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/plumb-os/plumb/attest"
	"github.com/plumb-os/plumb/format/attestapi"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/internal/atomicfile"
	"github.com/plumb-os/plumb/internal/cli"
	"github.com/plumb-os/plumb/updater/agent"
	"github.com/plumb-os/plumb/updater/device"
	"github.com/plumb-os/plumb/updater/identity"
)

// reportFile keeps the verifier's last report on the data partition.
const reportFile = "attestation.json"

type attestOptions struct {
	root  string
	out   string
	nonce string
}

func newAttestCmd(e *cli.Env) *cobra.Command {
	var o attestOptions
	cmd := &cobra.Command{
		Use:   "attest -o EVIDENCE.json",
		Short: "Quote the TPM's PCRs and write attestation evidence (format/attestapi/EVIDENCE.md)",
		Long: `Attest produces evidence for a manual run: a TPM2 quote with the device's
attestation key over PCRs 0-15 and the nonce, the UEFI event log, plumb-init's
PCR 15 log, the EK and AK and the running release. Check it on another
machine with plumb attest verify. Without --nonce a random one is used, so
the evidence proves nothing about freshness.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAttest(cmd.Context(), e, o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.out, "output", "o", "", "file to write the evidence to (required; - for stdout)")
	f.StringVar(&o.nonce, "nonce", "", "the verifier's nonce, hex (8..64 bytes; default random)")
	f.StringVar(&o.root, "root", "/", "filesystem root to read the device facts from")
	f.MarkHidden("root")
	cmd.MarkFlagRequired("output")
	return cmd
}

func runAttest(ctx context.Context, e *cli.Env, o attestOptions) error {
	nonce := make([]byte, 32)
	if o.nonce != "" {
		var err error
		if nonce, err = hex.DecodeString(o.nonce); err != nil || len(nonce) < attestapi.MinNonceSize || len(nonce) > attestapi.MaxNonceSize {
			return cli.BadInput(fmt.Errorf("--nonce: expected %d..%d bytes as hex, got %q", attestapi.MinNonceSize, attestapi.MaxNonceSize, o.nonce))
		}
	} else {
		rand.Read(nonce)
	}
	f := device.Probe(o.root)
	cfg, _ := agent.LoadConfig(o.root)
	ident, err := identity.Load(identity.TPMDevices, filepath.Join(o.root, agent.DataDir(cfg), agent.IdentityFile))
	if err != nil {
		return err
	}
	ev, err := collectEvidence(ctx, e, f, filepath.Join(o.root, agent.DataDir(cfg)), ident.ID, nonce)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(ev, "", "  ")
	if err != nil {
		return err
	}
	if o.out == "-" {
		_, err = e.Stdout.Write(append(b, '\n'))
		return err
	}
	return atomicfile.WriteFile(o.out, append(b, '\n'), 0o644)
}

// openAttestDevice opens the TPM and the device's attestation keys.
func openAttestDevice(e *cli.Env, stateDir, id string) (*attest.Device, func(), error) {
	rw, err := attest.OpenTPM()
	if err != nil {
		return nil, nil, err
	}
	d, err := attest.NewDevice(rw, stateDir, attest.WithDeviceID(id), attest.WithLogger(e.Log))
	if err != nil {
		rw.Close()
		return nil, nil, err
	}
	return d, func() { d.Close(); rw.Close() }, nil
}

func releaseOf(f device.Facts) attestapi.Release {
	r := attestapi.Release{Version: f.Release.Version, Hardware: f.Release.Hardware}
	if f.Boot != nil {
		r.RootfsSHA256 = f.Boot.RootfsSHA256
	}
	return r
}

func collectEvidence(ctx context.Context, e *cli.Env, f device.Facts, stateDir, id string, nonce []byte) (*attestapi.Evidence, error) {
	d, closeDev, err := openAttestDevice(e, stateDir, id)
	if err != nil {
		return nil, err
	}
	defer closeDev()
	return d.Evidence(ctx, nonce, releaseOf(f))
}

// attestor returns the agent's attestation run: enroll the AK once, then
// fetch a nonce, send evidence, keep the verifier's report and return its
// verdict. The verifier is plumb serve at the repository's URL.
func attestor(e *cli.Env, env agent.Env) func(ctx context.Context) *agent.Attestation {
	f, id := env.Facts, env.DeviceID
	return func(ctx context.Context) *agent.Attestation {
		res := &agent.Attestation{Time: time.Now().UTC(), Release: f.Release.Version}
		report, err := attestOnce(ctx, e, env)
		if err != nil {
			e.Log.Error("attestation failed", "err", err)
			res.Verdict, res.Error = "error", err.Error()
			return res
		}
		res.Verdict, res.Failed = report.Verdict, report.Failed()
		e.Log.Info("attestation verdict", "verdict", report.Verdict, "failed", strings.Join(res.Failed, ","), "release", f.Release.Version, "device", id)
		return res
	}
}

func attestOnce(ctx context.Context, e *cli.Env, env agent.Env) (*attestapi.Report, error) {
	f, id := env.Facts, env.DeviceID
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	c, err := attestapi.NewClient(env.Config.Repository, env.HTTPClient)
	if err != nil {
		return nil, err
	}
	dir := env.DataDir
	d, closeDev, err := openAttestDevice(e, dir, id)
	if err != nil {
		return nil, err
	}
	defer closeDev()
	enroll := func() error {
		ch, err := c.Enroll(ctx, d.EnrollmentRequest())
		if err != nil {
			return err
		}
		secret, err := d.ActivateCredential(ch.Credential, ch.Secret)
		if err != nil {
			return err
		}
		if _, err := c.Activate(ctx, &attestapi.Activation{DeviceID: id, Secret: secret}); err != nil {
			return err
		}
		if err := d.MarkEnrolled(); err != nil {
			return err
		}
		e.Log.Info("attestation key enrolled", "device", id)
		return nil
	}
	if !d.Enrolled() {
		if err := enroll(); err != nil {
			return nil, err
		}
	}
	n, err := c.Nonce(ctx, id)
	if errors.Is(err, attestapi.ErrNotEnrolled) {
		// The verifier lost our enrollment (a new database, an operator's
		// rebind): enroll again, by ourselves.
		e.Log.Warn("the verifier has no enrollment for this device: enrolling again", "device", id)
		if err := enroll(); err != nil {
			return nil, err
		}
		n, err = c.Nonce(ctx, id)
	}
	if err != nil {
		return nil, err
	}
	ev, err := d.Evidence(ctx, n.Nonce, releaseOf(f))
	if err != nil {
		return nil, err
	}
	report, raw, err := c.Evidence(ctx, ev)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, reportFile), raw, 0o644); err != nil {
		e.Log.Warn("keeping the attestation report", "err", err)
	}
	return report, nil
}

// bootChecks are the report's checks an attested commit needs passed: the
// quote authenticates the PCRs, the logs replay to them, every measured
// digest is the release's reference value, and Secure Boot and the verity
// root hash are as the release requires. The EK certificate is
// the remote verifier's business: the device trusts its own TPM.
var bootChecks = []string{
	attest.CheckQuoteSignature, attest.CheckNonce, attest.CheckPCRDigest, attest.CheckEventLog, attest.CheckPlumbLog,
	attest.CheckSecureBoot, attest.CheckBootloader, attest.CheckKernel, attest.CheckInitrd, attest.CheckCmdline,
	attest.CheckVerityRoot, attest.CheckRootfs, attest.CheckRelease,
}

// measuredBoot returns the attested commit's check: the device quotes its
// own PCRs over a fresh nonce and verifies the quote, its event log and
// plumb-init's log against the reference values in the release facts.
func measuredBoot(e *cli.Env, env agent.Env) func(ctx context.Context, facts *release.Facts) error {
	f, stateDir, id := env.Facts, env.DataDir, env.DeviceID
	return func(ctx context.Context, facts *release.Facts) error {
		custom, err := json.Marshal(facts)
		if err != nil {
			return err
		}
		refs, err := attest.ReferencesFromFacts(custom)
		if err != nil {
			return err
		}
		nonce := make([]byte, 32)
		rand.Read(nonce)
		d, closeDev, err := openAttestDevice(e, stateDir, id)
		if err != nil {
			return err
		}
		defer closeDev()
		ev, err := d.Evidence(ctx, nonce, releaseOf(f))
		if err != nil {
			return err
		}
		self := attest.MemStore{id: {DeviceID: id, EKPublic: d.EKPublic(), AKPublic: d.AKPublic()}}
		r := attest.NewVerifier(attest.VerifierOptions{Enrolled: self}).Verify(ev, nonce, refs)
		var bad []string
		for _, name := range bootChecks {
			c := r.Check(name)
			switch {
			case c == nil:
				bad = append(bad, name+" missing from the report")
			case c.Status == attest.StatusFailed:
				bad = append(bad, fmt.Sprintf("%s failed (expected %s, got %s)", name, c.Expected, c.Actual))
			case c.Status != attest.StatusPassed:
				bad = append(bad, fmt.Sprintf("%s %s (%s)", name, c.Status, c.Detail))
			}
		}
		if len(bad) > 0 {
			return fmt.Errorf("measured boot does not match release %s: %s", facts.Version, strings.Join(bad, "; "))
		}
		return nil
	}
}
