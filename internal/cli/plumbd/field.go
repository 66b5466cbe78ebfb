package plumbd

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/plumb-os/plumb/format/config"
	"github.com/plumb-os/plumb/internal/cli"
	"github.com/plumb-os/plumb/updater/agent"
	"github.com/plumb-os/plumb/updater/fetch"
	"github.com/plumb-os/plumb/updater/localapi"
	"github.com/plumb-os/plumb/updater/media"
)

// Field operation paths on the device.
const (
	mediaMount   = "/run/plumb/media"    // update media, one directory each
	newRootMount = "/run/plumb/new-root" // the new slot, for the post-install hook
)

// startField gives the agent its field operations: update media (found by
// polling /sys/class/block for the label, mounted read-only), application
// locks, and the local API on /run/plumb/agent.sock.
func startField(ctx context.Context, e *cli.Env, a *agent.Agent, cfg *config.Config) error {
	dir := agent.DataDir(cfg)
	root, err := os.ReadFile(cfg.Root)
	if err != nil {
		return fmt.Errorf("trusted root: %w", err)
	}
	a.Offline = func(medium string, ref time.Time) (agent.Repository, error) {
		return fetch.NewLocal(fetch.LocalOptions{Dir: medium, MetadataDir: filepath.Join(dir, "tuf"), TrustedRoot: root, RefTime: ref, Log: e.Log})
	}
	a.OpenMedium = func(dev string) (string, func() error, error) {
		mnt := filepath.Join(mediaMount, filepath.Base(dev))
		unmount, err := media.Mount(dev, mnt)
		return mnt, unmount, err
	}
	bootDisk := diskOf(a.Facts.Boot.RootDevice)
	a.ScanMedia = func() []string {
		return media.Scan("/sys/class/block", "/dev", func(name string) bool { return bootDisk != "" && strings.HasPrefix(name, bootDisk) })
	}
	a.MountSlot = func(dev string) (string, func() error, error) {
		if err := os.MkdirAll(newRootMount, 0o700); err != nil {
			return "", nil, err
		}
		if err := unix.Mount(dev, newRootMount, "squashfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
			return "", nil, fmt.Errorf("mounting %s read-only at %s: %w", dev, newRootMount, err)
		}
		return newRootMount, func() error { return unix.Unmount(newRootMount, 0) }, nil
	}
	a.Locks = &agent.Locks{MaxHold: cfg.LockMaxHoldTime()}
	a.Requests = make(chan agent.Request)
	l, err := localapi.Listen(localapi.Socket)
	if err != nil {
		return err
	}
	srv := localapi.New(localapi.Options{
		Status: func() ([]byte, error) {
			var buf bytes.Buffer
			err := runStatus(ctx, &cli.Env{Stdout: &buf, Log: e.Log}, statusOptions{root: "/", compact: true})
			return buf.Bytes(), err
		},
		Requests: a.Requests, Locks: a.Locks, Log: e.Log,
	})
	go func() {
		if err := srv.Serve(ctx, l); err != nil {
			e.Log.Error("local API stopped", "err", err)
		}
	}()
	e.Log.Info("local API listening", "socket", localapi.Socket)
	return nil
}

// diskOf is the disk of a partition device: /dev/vda3 → vda,
// /dev/nvme0n1p2 → nvme0n1.
func diskOf(part string) string {
	s := strings.TrimRight(strings.TrimPrefix(part, "/dev/"), "0123456789")
	if len(s) > 1 && s[len(s)-1] == 'p' && s[len(s)-2] >= '0' && s[len(s)-2] <= '9' {
		s = s[:len(s)-1]
	}
	return s
}

func apiClient() *localapi.Client { return localapi.NewClient(localapi.Socket) }

func newUpdateCmd(e *cli.Env) *cobra.Command {
	var from string
	cmd := &cobra.Command{
		Use:   "update --from PATH",
		Short: "Update from an update medium (a block device or a mounted plumb export)",
		Long: `Update asks the running agent to install the newest release for this device
from PATH: a block device holding a plumb export image (mounted read-only),
or a directory holding a plumb export. It is verified with the device's
trusted TUF root exactly like a network update, and installed through the
same slot, trial, commit and rollback path. The agent also finds media
labelled PLUMBUPDATE by itself when they are inserted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" {
				return cli.BadInput(fmt.Errorf("--from: expected a block device or a directory, got nothing"))
			}
			p, err := filepath.Abs(from)
			if err != nil {
				return cli.BadInput(err)
			}
			if _, err := os.Stat(p); err != nil {
				return cli.BadInput(fmt.Errorf("--from %s: %w", from, err))
			}
			if _, err := apiClient().Do(cmd.Context(), "POST", "/v1/update", map[string]string{"from": p}); err != nil {
				return err
			}
			fmt.Fprintf(e.Stdout, "update from %s: done (plumbd status shows the result)\n", p)
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "block device or directory holding a plumb export")
	return cmd
}

func newApproveCmd(e *cli.Env) *cobra.Command {
	return &cobra.Command{
		Use:   "approve [VERSION]",
		Short: "Approve installing the ready release (install: download-only)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v := ""
			if len(args) == 1 {
				v = args[0]
			}
			if _, err := apiClient().Do(cmd.Context(), "POST", "/v1/approve", map[string]string{"version": v}); err != nil {
				return err
			}
			fmt.Fprintln(e.Stdout, "approved")
			return nil
		},
	}
}

func newCheckCmd(e *cli.Env) *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Make the running agent check for an update now",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := apiClient().Do(cmd.Context(), "POST", "/v1/check", nil)
			return err
		},
	}
}

func newLockCmd(e *cli.Env) *cobra.Command {
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "lock take|release NAME",
		Short: "Take or release a named lock that defers installing and rebooting",
		Long: `Lock takes (or renews) or releases an application lock through the agent's
local API. While any lock is held the agent installs nothing and does not
reboot; a lock ends when released, after --ttl, or at the agent's
lock_max_hold (default 1h), whichever comes first.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			var out []byte
			switch args[0] {
			case "take":
				body := map[string]string{}
				if ttl > 0 {
					body["ttl"] = ttl.String()
				}
				out, err = apiClient().Do(cmd.Context(), "POST", "/v1/locks/"+args[1], body)
			case "release":
				out, err = apiClient().Do(cmd.Context(), "DELETE", "/v1/locks/"+args[1], nil)
			default:
				return cli.BadInput(fmt.Errorf("lock: expected take or release, got %q", args[0]))
			}
			if err != nil {
				return err
			}
			e.Stdout.Write(out)
			return nil
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "release the lock by itself after this long")
	return cmd
}
