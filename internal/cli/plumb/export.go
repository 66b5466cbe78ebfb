package plumb

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/plumb-os/plumb/builder/medium"
	"github.com/plumb-os/plumb/builder/tufrepo"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/internal/cli"
)

type exportOptions struct {
	dir, hardware, version, out, fs string
	since                           []string
	jsonOut                         bool
}

func newExportCmd(e *cli.Env) *cobra.Command {
	var o exportOptions
	cmd := &cobra.Command{
		Use:   "export REPO --hardware H [--version V] [--since V0]... -o DIR|FILE.img",
		Short: "Write an update medium for devices without network",
		Long: `Export writes a self-contained, TUF-verifiable copy of one release of the
repository REPO: its metadata exactly as published (nothing is re-signed)
and the release's image, with delta bundles from the versions named by
--since. With -o DIR it writes a directory; with -o FILE.img a disk image
(ext4, or FAT with --fs fat) labelled PLUMBUPDATE, ready to be written to a
USB stick (dd if=FILE.img of=/dev/sdX). plumbd finds such a stick when it
is inserted, or takes plumbd update --from PATH. docs/offline.md says how
expiry and rollback protection work offline.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.dir = args[0]
			return runExport(cmd.Context(), e, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.hardware, "hardware", "", "hardware the release is for (required)")
	f.StringVar(&o.version, "version", "", "release to export (default: the newest for --hardware)")
	f.StringArrayVar(&o.since, "since", nil, "a version the devices run: include the delta from it (repeatable)")
	f.StringVarP(&o.out, "output", "o", "", "directory, or FILE.img for a USB image (required)")
	f.StringVar(&o.fs, "fs", medium.Ext4, "filesystem of a FILE.img: ext4 or fat")
	f.BoolVar(&o.jsonOut, "json", false, "print what was exported as JSON")
	cmd.MarkFlagRequired("hardware")
	cmd.MarkFlagRequired("output")
	return cmd
}

func runExport(ctx context.Context, e *cli.Env, o exportOptions) error {
	if o.fs != medium.Ext4 && o.fs != medium.FAT {
		return cli.BadInput(fmt.Errorf("--fs: expected ext4 or fat, got %q", o.fs))
	}
	r, err := openRepo(e, o.dir)
	if err != nil {
		return err
	}
	image := strings.HasSuffix(o.out, ".img")
	target := o.out
	if image {
		if fi, err := os.Stat(o.out); err == nil && fi.IsDir() {
			return cli.BadInput(fmt.Errorf("-o %s: expected an image file name, got a directory", o.out))
		}
		tmp, err := os.MkdirTemp(filepath.Dir(o.out), ".export-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		target = filepath.Join(tmp, "medium")
	}
	ex, err := r.Export(ctx, target, tufrepo.ExportOptions{Hardware: o.hardware, Version: o.version, Since: o.since})
	if err != nil {
		return err
	}
	if image {
		if err := medium.WriteImage(ctx, target, o.out, o.fs); err != nil {
			return err
		}
	}
	if o.jsonOut {
		return cli.PrintJSON(e.Stdout, ex)
	}
	fmt.Fprintf(e.Stdout, "exported %s %s to %s: %d targets, %d bytes\n", ex.Hardware, ex.Version, o.out, len(ex.Targets), ex.Bytes)
	return nil
}

type approveOptions struct {
	dir, hardware, version string
	all                    bool
	groups, devices        []string
}

func newPlumbApproveCmd(e *cli.Env) *cobra.Command {
	var o approveOptions
	cmd := &cobra.Command{
		Use:   "approve REPO --hardware H --version V (--all | --group G... | --device ID...)",
		Short: "Approve a release for devices whose install policy is download-only",
		Long: `Approve adds an approval to the release facts of REPO's release H/V, signed
by the targets key like every release fact: devices with install:
download-only that it names (by device id, by the group in their agent
config, or all) install the release once they have downloaded it.
Approvals accumulate.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.dir = args[0]
			if !o.all && len(o.groups) == 0 && len(o.devices) == 0 {
				return cli.BadInput(fmt.Errorf("expected --all, --group G or --device ID"))
			}
			r, err := openRepo(e, o.dir)
			if err != nil {
				return err
			}
			a := release.Approval{All: o.all, Groups: o.groups, Devices: o.devices}
			if err := r.Approve(cmd.Context(), o.hardware, o.version, a); err != nil {
				return err
			}
			fmt.Fprintf(e.Stdout, "approved %s %s\n", o.hardware, o.version)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.hardware, "hardware", "", "hardware of the release (required)")
	f.StringVar(&o.version, "version", "", "version of the release (required)")
	f.BoolVar(&o.all, "all", false, "every device")
	f.StringArrayVar(&o.groups, "group", nil, "devices of this group (agent config: group; repeatable)")
	f.StringArrayVar(&o.devices, "device", nil, "this device id (plumbd status: device.id; repeatable)")
	cmd.MarkFlagRequired("hardware")
	cmd.MarkFlagRequired("version")
	return cmd
}
