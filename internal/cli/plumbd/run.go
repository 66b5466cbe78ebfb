package plumbd

import (
	"context"
	"fmt"

	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/internal/cli"
	"github.com/plumb-os/plumb/updater/agent"
	"github.com/plumb-os/plumb/updater/device"
)

// runAgent announces the device on stdout (the console under init) and
// then keeps it up to date when the image names a repository.
func runAgent(ctx context.Context, e *cli.Env, o runOptions) error {
	f := device.Probe(o.root)
	fmt.Fprintf(e.Stdout, "plumbd %s started: release=%s version=%s slot=%s tpm=%t\n",
		agentVersion(), f.Release.Name, f.Release.Version, f.Slot, f.TPM.Present)
	cfg, err := agent.LoadConfig(o.root)
	if err != nil {
		return fmt.Errorf("agent config: %w", err)
	}
	if cfg.Repository == "" {
		e.Log.Info("no repository configured: not updating")
		<-ctx.Done()
		return nil
	}
	a, err := agent.New(ctx, cfg, f, agent.WithLogger(e.Log), agent.WithAttestation(func(env agent.Env) (func(context.Context) *agent.Attestation, func(context.Context, *release.Facts) error) {
		return attestor(e, env), measuredBoot(e, env)
	}))
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
