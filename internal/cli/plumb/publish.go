package plumb

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/plumb-os/plumb/builder/tufrepo"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/internal/cli"
)

type publishOptions struct {
	dir     string
	build   string
	channel string
	rollout int
	deltas  int
	jsonOut bool

	workloads string   // --workloads FILE
	group     string   // --group G
	archives  []string // --archive FILE, repeatable
}

func newPublishCmd(e *cli.Env) *cobra.Command {
	var o publishOptions
	cmd := &cobra.Command{
		Use:   "publish DIR (--release BUILD_DIR | --workloads FILE --group G)",
		Short: "Publish a release (plumb build's output) or a workload manifest in a repository",
		Long: `Publish copies BUILD_DIR/rootfs.sqfs into the repository DIR as the target
<hardware>/<version>/rootfs.sqfs, with the release facts (channel, rollout,
digests) from BUILD_DIR/manifest.json, and signs new metadata.

With --deltas K (default 3) it also writes delta bundles from the K newest
older releases of the same hardware, as targets
<hardware>/<version>/from-<old>.delta (format/release/release.md); a
device running one of them downloads only the bundle.

Publishing a version again with the same image changes nothing (or only its
channel and rollout); with another image it fails. A failed publish leaves
the repository as it was.

With --workloads FILE --group G it publishes the workload manifest FILE
(YAML, format/workload/WORKLOADS.md) as apps/G/workloads.json, and the OCI
image archives it names (archive: FILE, relative to the YAML, or --archive
FILE) as apps/G/<file>, all signed by the delegated role apps
(keys/apps.key), the only role devices accept for apps/ targets.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.dir = args[0]
			switch {
			case (o.build == "") == (o.workloads == ""):
				return cli.BadInput(fmt.Errorf("expected one of --release BUILD_DIR or --workloads FILE"))
			case o.workloads != "":
				return runPublishWorkloads(cmd.Context(), e, o)
			case o.group != "" || len(o.archives) > 0:
				return cli.BadInput(fmt.Errorf("--group and --archive go with --workloads"))
			}
			return runPublish(cmd.Context(), e, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.build, "release", "", "build output directory to publish")
	f.StringVar(&o.channel, "channel", "", "channel to publish to (default: the recipe's)")
	f.IntVar(&o.rollout, "rollout", 100, "percentage of devices that may install the release (0..100)")
	f.IntVar(&o.deltas, "deltas", tufrepo.DefaultDeltas, "make delta bundles from this many older releases of the same hardware (0: none)")
	f.BoolVar(&o.jsonOut, "json", false, "print the release facts as JSON")
	f.StringVar(&o.workloads, "workloads", "", "workload manifest (YAML) to publish as apps/GROUP/workloads.json")
	f.StringVar(&o.group, "group", "", "device group the workloads are for (with --workloads)")
	f.StringArrayVar(&o.archives, "archive", nil, "OCI image archive to publish as apps/GROUP/<file name> (repeatable; with --workloads)")
	return cmd
}

func runPublish(ctx context.Context, e *cli.Env, o publishOptions) error {
	if o.rollout < 0 || o.rollout > 100 {
		return cli.BadInput(fmt.Errorf("--rollout: expected a percentage 0..100, got %d", o.rollout))
	}
	if o.deltas < 0 {
		return cli.BadInput(fmt.Errorf("--deltas: expected a count >= 0, got %d", o.deltas))
	}
	r, err := openRepo(e, o.dir)
	if err != nil {
		return err
	}
	f, err := r.Publish(ctx, o.build, tufrepo.PublishOptions{Channel: o.channel, Rollout: &o.rollout, Deltas: o.deltas})
	if err != nil {
		return err
	}
	if o.jsonOut {
		return cli.PrintJSON(e.Stdout, f)
	}
	fmt.Fprintf(e.Stdout, "published %s %s for %s on %s (rollout %d%%)\n", f.Name, f.Version, f.Hardware, f.Channel, f.Rollout)
	rels, err := r.Releases()
	if err != nil {
		return err
	}
	for _, rel := range rels {
		if rel.Facts.Kind == release.KindDelta && rel.Facts.Hardware == f.Hardware && rel.Facts.Version == f.Version {
			fmt.Fprintf(e.Stdout, "  delta %s: %d bytes (%.1f%% of the full image)\n", rel.Path, rel.Length, 100*float64(rel.Length)/float64(f.Rootfs.Size))
		}
	}
	return nil
}
