package cli

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

	"github.com/plumb-os/plumb/internal/buildinfo"
	"github.com/plumb-os/plumb/updater/agent"
	"github.com/plumb-os/plumb/updater/device"
	"github.com/plumb-os/plumb/updater/identity"
	"github.com/plumb-os/plumb/updater/reconcile"
)

// RunPlumbd runs the plumbd command with args (without the program name)
// and returns the process exit code.
func RunPlumbd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr}
	var verbose bool
	root := &cobra.Command{
		Use:           "plumbd",
		Short:         "The Plumb device agent",
		Version:       buildinfo.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(*cobra.Command, []string) {
			// The agent's log is the device's record: info by default.
			e.log = newDeviceLogger(stderr, verbose)
		},
	}
	root.PersistentFlags().BoolVarP(&verbose, "verbose", "v", false, "log debug details to stderr")
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return badInput(err) })
	root.AddCommand(newStatusCmd(e), newRunCmd(e), newFetchCmd(e), newInstallCmd(e), newAttestCmd(e))
	err := root.ExecuteContext(ctx)
	if err != nil && isCobraUsageError(err) {
		err = badInput(err)
	}
	return exitCode(err, stderr, "plumbd")
}

// agentStatus is what `plumbd status` prints.
type agentStatus struct {
	AgentVersion string `json:"agent_version"`
	device.Facts
	Device *identity.Identity `json:"device,omitempty"`
	Update *agent.State       `json:"update,omitempty"`
	// Workloads is the reconciler's last report (status.json), when the
	// device runs workloads.
	Workloads *reconcile.Status `json:"workloads,omitempty"`
	// Rollback explains the last failed trial boot (agent.RollbackFile).
	Rollback *agent.Rollback `json:"rollback,omitempty"`
}

type statusOptions struct {
	root    string
	compact bool
}

func newStatusCmd(e *env) *cobra.Command {
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

func runStatus(_ context.Context, e *env, o statusOptions) error {
	st := agentStatus{AgentVersion: buildinfo.Version, Facts: device.Probe(o.root)}
	cfg, _ := loadAgentConfig(o.root)
	if s, err := agent.LoadState(filepath.Join(o.root, dataDir(cfg), stateFile)); err == nil {
		st.Update = s
	}
	st.Rollback = agent.LoadRollback(filepath.Join(o.root, dataDir(cfg)))
	// Status only reads: the key file is made by plumbd run, not here.
	keyFile := filepath.Join(o.root, dataDir(cfg), identityFile)
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
		if b, err := os.ReadFile(filepath.Join(o.root, dataDir(cfg), appsStateDir, reconcile.StatusFile)); err == nil {
			json.Unmarshal(b, st.Workloads)
			if boot := bootTime(o.root); !boot.IsZero() && st.Workloads.Updated.Before(boot) {
				st.Workloads.Stale = true
			}
		}
	}
	enc := json.NewEncoder(e.stdout)
	if !o.compact {
		enc.SetIndent("", "  ")
	}
	return enc.Encode(st)
}

type runOptions struct{ root string }

func newRunCmd(e *env) *cobra.Command {
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
