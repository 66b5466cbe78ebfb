package plumbd

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/plumb-os/plumb/format/deviceapi"
	"github.com/plumb-os/plumb/internal/buildinfo"
	"github.com/plumb-os/plumb/internal/cli"
	"github.com/plumb-os/plumb/updater/agent"
	"github.com/plumb-os/plumb/updater/device"
	"github.com/plumb-os/plumb/updater/identity"
	"github.com/plumb-os/plumb/updater/reconcile"
)

// Run runs the plumbd command with args (without the program name)
// and returns the process exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cli.Execute(ctx, cli.Command{
		Name: "plumbd", Short: "The Plumb device agent", Logger: cli.NewDeviceLogger,
		Verbs: func(e *cli.Env) []*cobra.Command {
			return []*cobra.Command{newStatusCmd(e), newRunCmd(e), newFetchCmd(e), newInstallCmd(e), newAttestCmd(e), newUpdateCmd(e), newApproveCmd(e), newCheckCmd(e), newLockCmd(e)}
		},
	}, args, stdout, stderr)
}

type statusOptions struct {
	root    string
	compact bool
}

func newStatusCmd(e *cli.Env) *cobra.Command {
	var o statusOptions
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Print the device's release, slot and TPM as JSON",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runStatus(cmd.Context(), e, o)
		},
	}
	cmd.Flags().StringVar(&o.root, "root", "/", "filesystem root to read the device facts from")
	cmd.Flags().MarkHidden("root")
	cmd.Flags().BoolVar(&o.compact, "compact", false, "print the JSON on one line")
	return cmd
}

func runStatus(_ context.Context, e *cli.Env, o statusOptions) error {
	st := agent.Status{AgentVersion: buildinfo.Version, Facts: device.Probe(o.root)}
	cfg, _ := agent.LoadConfig(o.root)
	if s, err := agent.LoadState(filepath.Join(o.root, agent.DataDir(cfg), agent.StateFile)); err == nil {
		st.Update = s
	}
	st.Rollback = agent.LoadRollback(filepath.Join(o.root, agent.DataDir(cfg)))
	// Status only reads: the key file is made by plumbd run, not here.
	keyFile := filepath.Join(o.root, agent.DataDir(cfg), agent.IdentityFile)
	if _, err := os.Stat(keyFile); err != nil {
		keyFile = ""
	}
	devices := identity.TPMDevices
	if o.root != "/" {
		devices = nil
	}
	if id, err := identity.Load(devices, keyFile); err == nil {
		st.Device = id
	}
	if cfg != nil && cfg.Workloads != nil {
		st.Workloads = &reconcile.Status{Group: cfg.Workloads.Group, Containers: []reconcile.ContainerStatus{}}
		if b, err := os.ReadFile(filepath.Join(o.root, agent.DataDir(cfg), agent.AppsStateDir, reconcile.StatusFile)); err == nil {
			json.Unmarshal(b, st.Workloads)
			if boot := bootTime(o.root); !boot.IsZero() && st.Workloads.Updated.Before(boot) {
				st.Workloads.Stale = true
			}
		}
	}
	if cfg != nil && cfg.Wake != nil {
		st.Wake = readWake(filepath.Join(o.root, agent.DataDir(cfg), agent.WakeFile), bootTime(o.root))
	}
	enc := json.NewEncoder(e.Stdout)
	if !o.compact {
		enc.SetIndent("", "  ")
	}
	return enc.Encode(st)
}

type runOptions struct{ root string }

func newRunCmd(e *cli.Env) *cobra.Command {
	var o runOptions
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the agent: report the device, then keep it up to date",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAgent(cmd.Context(), e, o)
		},
	}
	cmd.Flags().StringVar(&o.root, "root", "/", "filesystem root to read the device facts from")
	cmd.Flags().MarkHidden("root")
	return cmd
}

// readWake reads the wake-up channel's state file; a missing or unreadable
// file is a channel that plumbd has not held (down, why said). A state
// from before boot is marked stale: plumbd has not run it since.
func readWake(path string, boot time.Time) *deviceapi.WakeStatus {
	var w deviceapi.WakeStatus
	b, err := os.ReadFile(path)
	if err == nil && len(b) <= 4096 {
		err = json.Unmarshal(b, &w)
	}
	if err != nil || (w.State != deviceapi.WakeConnected && w.State != deviceapi.WakeDown) {
		return &deviceapi.WakeStatus{State: deviceapi.WakeDown, Error: "plumbd has not run the wake-up channel (no valid " + agent.WakeFile + ")"}
	}
	if !boot.IsZero() && w.Since.Before(boot) {
		w.Stale = true
	}
	return &w
}

func agentVersion() string { return buildinfo.Version }

// bootTime is when the system booted (now minus /proc/uptime); zero when
// unknown.
func bootTime(root string) time.Time {
	b, err := os.ReadFile(filepath.Join(root, "proc", "uptime"))
	if err != nil {
		return time.Time{}
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return time.Time{}
	}
	up, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return time.Time{}
	}
	return time.Now().Add(-time.Duration(up * float64(time.Second)))
}
