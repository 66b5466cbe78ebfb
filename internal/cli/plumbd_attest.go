package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/plumb-os/plumb/attest"
	"github.com/plumb-os/plumb/internal/atomicfile"
	"github.com/plumb-os/plumb/updater/device"
)

type deviceAttestOptions struct {
	output   string
	nonce    string
	root     string
	eventLog string
	plumbLog string
	tpm      string
}

func newDeviceAttestCmd(e *env) *cobra.Command {
	var o deviceAttestOptions
	cmd := &cobra.Command{
		Use:   "attest -o EVIDENCE [--nonce HEX]",
		Short: "Quote the TPM's PCRs and write attestation evidence",
		Long: `Attest produces the device's attestation evidence (attest/EVIDENCE.md):
a TPM2 quote over PCRs 0-15 (sha256) by the attestation key, made over
--nonce (hex, as a verifier issued it; a random one when not given, printed
on stdout), with the UEFI event log, plumb-init's PCR 15 measurements, the
AK and EK public keys, the EK certificate and the release the device runs.
Check it with: plumb attest verify EVIDENCE --repo ... --nonce HEX`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDeviceAttest(cmd.Context(), e, o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.output, "output", "o", "", "file to write the evidence to (required)")
	f.StringVar(&o.nonce, "nonce", "", "the verifier's nonce, hex (8..64 bytes; default: random)")
	f.StringVar(&o.eventLog, "event-log", attest.EventLogPath, "the UEFI event log")
	f.StringVar(&o.plumbLog, "plumb-log", attest.PlumbLogPath, "plumb-init's measurement log")
	f.StringVar(&o.root, "root", "/", "filesystem root to read the device facts from")
	f.MarkHidden("root")
	f.StringVar(&o.tpm, "tpm", "", "TPM device or emulator socket (default /dev/tpmrm0, else /dev/tpm0)")
	cmd.MarkFlagRequired("output")
	return cmd
}

func runDeviceAttest(ctx context.Context, e *env, o deviceAttestOptions) error {
	var nonce []byte
	if o.nonce != "" {
		var err error
		if nonce, err = hex.DecodeString(o.nonce); err != nil || len(nonce) < attest.MinNonceSize || len(nonce) > attest.MaxNonceSize {
			return badInput(fmt.Errorf("--nonce: expected %d..%d bytes as hex, got %q", attest.MinNonceSize, attest.MaxNonceSize, o.nonce))
		}
	} else {
		nonce = make([]byte, 32)
		rand.Read(nonce)
	}
	facts := device.Probe(o.root)
	cfg, _ := loadAgentConfig(o.root)
	dir := filepath.Join(o.root, dataDir(cfg))
	id, err := deviceID(dir)
	if err != nil {
		return fmt.Errorf("device id: %w", err)
	}
	var paths []string
	if o.tpm != "" {
		paths = []string{o.tpm}
	}
	rw, err := attest.OpenTPM(paths...)
	if err != nil {
		return err
	}
	defer rw.Close()
	dev, err := attest.NewDevice(rw, dir, attest.WithDeviceID(id), attest.WithLogger(e.log),
		attest.WithEventLog(o.eventLog), attest.WithPlumbLog(o.plumbLog))
	if err != nil {
		return err
	}
	defer dev.Close()
	rel := attest.Release{Version: facts.Release.Version, Hardware: facts.Release.Hardware}
	ev, err := dev.Evidence(ctx, nonce, rel)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(ev, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(o.output, append(b, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "evidence written to %s (device %s, release %s, nonce %x)\n", o.output, id, rel.Version, nonce)
	return nil
}
