package plumbd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/plumb-os/plumb/format/config"
	"github.com/plumb-os/plumb/internal/cli"
	"github.com/plumb-os/plumb/updater/agent"
	"github.com/plumb-os/plumb/updater/datacrypt"
	"github.com/plumb-os/plumb/updater/fetch"
	"github.com/plumb-os/plumb/updater/identity"
	"github.com/plumb-os/plumb/updater/install"
	"github.com/plumb-os/plumb/updater/report"
	"github.com/plumb-os/plumb/updater/slot"
)

type installOptions struct {
	disk     string
	force    bool
	dryRun   bool
	noReboot bool
	root     string
	metadata string
}

func newInstallCmd(e *cli.Env) *cobra.Command {
	var o installOptions
	cmd := &cobra.Command{
		Use:   "install --disk DEV|auto [--force] [--dry-run] [--no-reboot]",
		Short: "Install the newest release for this hardware on a blank disk, then reboot",
		Long: `Install is what the installer's init runs (or a person, by hand). It
refreshes the TUF metadata of the repository in /etc/plumb/agent.json,
chooses the newest release for the hardware and channel there, and writes
the disk described by /etc/plumb/installer.json (the build's layout):

  1. the release is streamed into slot A's region and verified against TUF
     (length, sha256) before anything else is written: a tampered release
     stops here, the partition table unwritten and the bytes zeroed again;
  2. the GPT (ESP, plumb-root-a, plumb-root-b, plumb-data);
  3. the data partition's empty ext4 filesystem;
  4. the ESP: systemd-boot, loader.conf, slot a's kernel and initrd (checked
     against the release facts), its boot-counting trial entry; for a Secure
     Boot release, slot a's signed UKI (a TUF target, downloaded before
     step 2) and the entry that starts it, as plumbd writes on an update;
  5. slot A, the data partition and the ESP's boot files are read back and
     checked, the disk is synced;
  6. a data partition the recipe seals to the TPM (data_encryption:
     luks2-tpm) is created and sealed now when the installer booted under
     Secure Boot, signed with the release's db certificate, with a TPM; the
     recovery key is printed once. Otherwise plumb-init does it on the first
     boot under Secure Boot (the line says why). Then the machine reboots.

--disk auto takes the only disk whose first MiB is all zeros. A disk holding
a partition table, a filesystem or any data is refused (exit 2, nothing
written) unless --force. The disk holding the partition systemd-boot
started the installer from (LoaderDevicePartUUID in efivarfs: the USB
stick's ESP) is refused even with --force. --dry-run does steps that only read: the release is
downloaded and verified into nothing. Exit 3: the release or the repository
failed verification.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runInstall(cmd.Context(), e, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.disk, "disk", "", `disk device or image file to install to, or "auto" (required)`)
	f.BoolVar(&o.force, "force", false, "overwrite a disk that holds partitions, a filesystem or data")
	f.BoolVar(&o.dryRun, "dry-run", false, "check and verify everything, write nothing")
	f.BoolVar(&o.noReboot, "no-reboot", false, "do not reboot after installing")
	f.StringVar(&o.root, "root", "/", "filesystem root holding etc/plumb/{agent,installer}.json")
	f.StringVar(&o.metadata, "metadata-dir", "", "TUF metadata cache (default: a temporary directory)")
	cmd.MarkFlagRequired("disk")
	return cmd
}

func runInstall(ctx context.Context, e *cli.Env, o installOptions) error {
	cfg, err := agent.LoadConfig(o.root)
	if err != nil {
		return cli.BadInput(fmt.Errorf("agent config: %w", err))
	}
	data, err := os.ReadFile(filepath.Join(o.root, config.InstallerPath))
	if err != nil {
		return cli.BadInput(fmt.Errorf("installer config: %w (not an installer image?)", err))
	}
	layout, err := config.ParseInstaller(data)
	if err != nil {
		return cli.BadInput(err)
	}
	if cfg.Repository == "" {
		return cli.BadInput(errors.New("agent config: repository: expected the repository's URL, got nothing"))
	}
	root, err := os.ReadFile(rooted(o.root, cfg.Root))
	if err != nil {
		return cli.BadInput(fmt.Errorf("trusted root: %w", err))
	}
	ca := ""
	if cfg.CA != "" {
		ca = rooted(o.root, cfg.CA)
	}
	hc, err := agent.HTTPClient(ca, "", e.Log)
	if err != nil {
		return cli.BadInput(err)
	}
	mdir := o.metadata
	if mdir == "" {
		if mdir, err = os.MkdirTemp("", "plumb-install-tuf-"); err != nil {
			return err
		}
		defer os.RemoveAll(mdir)
	}
	client, err := fetch.New(agent.FetchOptions(cfg, mdir, root, hc, e.Log))
	if err != nil {
		return err
	}

	// The identity comes from the TPM: without one, the key file belongs
	// on the data partition that does not exist yet, and the installer
	// does not report.
	var rep *report.Reporter
	deviceID := ""
	if id, err := identity.Load(identity.TPMDevices, ""); err == nil {
		deviceID = id.ID
		fmt.Fprintf(e.Stdout, "plumb-install: device %s (TPM key)\n", id.ID)
		rctx, cancel := context.WithCancel(ctx)
		defer cancel()
		if dc, err := report.DeviceClient(hc, id, cfg.JoinToken); err != nil {
			e.Log.Warn("no device client certificate: the installer sends no status reports", "err", err)
		} else {
			rep = report.New(rctx, cfg.ReportBase(), report.Device{ID: id.ID, PublicKey: id.PublicKey}, dc, e.Log)
		}
	} else {
		e.Log.Info("no TPM identity: the installer sends no status reports", "err", err)
	}
	// Booted from a USB stick by systemd-boot: the stick's ESP is named
	// in efivarfs, and the disk holding it is never written.
	efivars := rooted(o.root, slot.EFIVarsDir)
	if o.root == "/" {
		if ents, err := os.ReadDir(efivars); err == nil && len(ents) == 0 {
			if err := slot.MountEFIVars(efivars); err != nil {
				e.Log.Debug("efivarfs not mounted", "err", err)
			}
		}
	}
	secureBoot := func() (bool, error) { return datacrypt.SecureBootFromEFIVars(efivars) }
	if on, err := secureBoot(); err == nil {
		fmt.Fprintf(e.Stdout, "plumb-install: Secure Boot %s\n", map[bool]string{true: "on", false: "off"}[on])
	}
	var tpm transport.TPM
	if o.root == "/" && !o.dryRun {
		if f, err := openTPM(identity.TPMDevices); err == nil {
			defer f.Close()
			tpm = transport.FromReadWriter(f)
		}
	}
	bootPart, err := install.BootPartUUID(efivars)
	if err != nil {
		e.Log.Warn("boot partition unknown", "err", err)
	}
	if bootPart != "" {
		fmt.Fprintf(e.Stdout, "plumb-install: booted from partition %s: its disk is never written\n", bootPart)
	}
	res, err := install.Run(ctx, install.Options{
		Disk: o.disk, Force: o.force, DryRun: o.dryRun, BootPartUUID: bootPart,
		Hardware: cfg.Hardware, Channel: cfg.Channel, DeviceID: deviceID, Group: cfg.Group,
		Layout: layout, Root: o.root, Repo: client,
		SecureBoot: secureBoot, TPM: tpm,
		SysBlock: "/sys/class/block", Dev: "/dev",
		Console: e.Stdout, Log: e.Log,
		Report: func(p install.Progress) {
			rep.Send(map[string]any{"agent_version": agentVersion(), "phase": "installing"}, p)
		},
	})
	rep.Flush(5 * time.Second)
	switch {
	case err == nil:
	case install.IsRefusal(err):
		return cli.BadInput(err)
	case errors.Is(err, fetch.ErrVerification):
		return cli.Verification(err)
	default:
		return err
	}
	if o.dryRun || o.noReboot {
		fmt.Fprintf(e.Stdout, "plumb-install: %s on %s: done, not rebooting\n", res.Version, res.Disk)
		return nil
	}
	fmt.Fprintf(e.Stdout, "plumb-install: %s installed on %s: rebooting\n", res.Version, res.Disk)
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
		return fmt.Errorf("rebooting: %w", err)
	}
	return nil
}

// openTPM opens the first TPM device node that exists (resource manager
// first).
func openTPM(devs []string) (*os.File, error) {
	for _, p := range devs {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	return nil, errors.New("no TPM")
}

// rooted resolves an absolute device path below root.
func rooted(root, p string) string {
	if root == "" || root == "/" || !filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(root, p)
}
