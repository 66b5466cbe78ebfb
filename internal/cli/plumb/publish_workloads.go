package plumb

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/plumb-os/plumb/builder/tufrepo"
	"github.com/plumb-os/plumb/builder/workloadsrc"
	"github.com/plumb-os/plumb/format/workload"
	"github.com/plumb-os/plumb/internal/cli"
)

// runPublishWorkloads is `plumb publish DIR --workloads FILE --group G`.
func runPublishWorkloads(ctx context.Context, e *cli.Env, o publishOptions) error {
	if o.group == "" {
		return cli.BadInput(fmt.Errorf("--group: expected a group name with --workloads, got nothing"))
	}
	if err := workload.ValidGroup(o.group); err != nil {
		return cli.BadInput(fmt.Errorf("--%w", err))
	}
	data, err := os.ReadFile(o.workloads)
	if err != nil {
		return cli.BadInput(fmt.Errorf("--workloads: %w", err))
	}
	src, err := workloadsrc.ParseYAML(o.workloads, data, o.group)
	if err != nil {
		return cli.BadInput(err)
	}
	archives := map[string]string{}
	for i, file := range src.Archives {
		archives[src.Manifest.Containers[i].Target] = file
	}
	for _, file := range o.archives {
		t := workload.TargetPrefix + o.group + "/" + filepath.Base(file)
		if prev, ok := archives[t]; ok && prev != file {
			return cli.BadInput(fmt.Errorf("--archive %s: target %s is also given by %s", file, t, prev))
		}
		archives[t] = file
	}
	// Each archive must hold the image its containers pin: a typo fails
	// here rather than on every device.
	for _, c := range src.Manifest.Containers {
		if file, ok := archives[c.Target]; ok && c.Target != "" {
			if err := workloadsrc.CheckArchive(&c, file); err != nil {
				return cli.BadInput(err)
			}
		}
	}
	r, err := openRepo(e, o.dir)
	if err != nil {
		return err
	}
	w, err := r.PublishWorkloads(ctx, o.group, src.Manifest, archives, tufrepo.WorkloadOptions{})
	if err != nil {
		return err
	}
	if o.jsonOut {
		return cli.PrintJSON(e.Stdout, w)
	}
	verb := "published"
	if !w.Changed {
		verb = "already published, unchanged:"
	}
	fmt.Fprintf(e.Stdout, "%s %s (%d containers, sha256 %s) signed by the apps role, version %d\n",
		verb, w.Target, len(src.Manifest.Containers), w.SHA256, w.Version)
	return nil
}
