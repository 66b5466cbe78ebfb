package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/plumb-os/plumb/builder/tufrepo"
)

func init() { badInputClasses = append(badInputClasses, tufrepo.ErrInvalid) }

type repoOptions struct {
	dir     string
	jsonOut bool
}

func newRepoCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "repo",
		Short: "Create and maintain a TUF update repository",
		Long: `A repository directory holds:
  keys/root.key                  the root key: keep it offline, copy it in only for "plumb repo rotate"
  keys/{targets,snapshot,timestamp}.key
  repository/metadata/           TUF metadata (served as BASE/metadata/)
  repository/targets/            release images (served as BASE/targets/)

Serve DIR/repository with "plumb serve DIR" or any static web server.`,
	}
	cmd.AddCommand(newRepoInitCmd(e), newRepoRefreshCmd(e), newRepoRotateCmd(e), newRepoLsCmd(e))
	return cmd
}

func newRepoInitCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "init DIR",
		Short: "Create a repository with new keys (DIR must be empty or missing)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRepoInit(cmd.Context(), e, repoOptions{dir: args[0]})
		},
	}
}

func runRepoInit(ctx context.Context, e *env, o repoOptions) error {
	if err := tufrepo.Init(ctx, o.dir, tufrepo.Options{Log: e.log}); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "created repository %s\nmove %s offline: it is needed only to rotate keys\n",
		o.dir, filepath.Join(o.dir, "keys", "root.key"))
	return nil
}

func newRepoRefreshCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "refresh DIR",
		Short: "Re-sign the timestamp (and snapshot, targets when they would expire first); run it daily",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := openRepo(e, args[0])
			if err != nil {
				return err
			}
			return r.Refresh(cmd.Context())
		},
	}
}

func newRepoRotateCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "rotate DIR ROLE",
		Short: "Replace a role's key (root, targets, snapshot or timestamp); needs keys/root.key",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := openRepo(e, args[0])
			if err != nil {
				return err
			}
			if err := r.Rotate(cmd.Context(), args[1]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "rotated the %s key\n", args[1])
			return nil
		},
	}
}

func newRepoLsCmd(e *env) *cobra.Command {
	var o repoOptions
	cmd := &cobra.Command{
		Use:   "ls DIR",
		Short: "List the published releases",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.dir = args[0]
			return runRepoLs(cmd.Context(), e, o)
		},
	}
	cmd.Flags().BoolVar(&o.jsonOut, "json", false, "print the releases as JSON")
	return cmd
}

func runRepoLs(_ context.Context, e *env, o repoOptions) error {
	r, err := openRepo(e, o.dir)
	if err != nil {
		return err
	}
	rels, err := r.Releases()
	if err != nil {
		return err
	}
	if o.jsonOut {
		if rels == nil {
			rels = []tufrepo.Release{}
		}
		return printJSON(e.stdout, rels)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HARDWARE\tVERSION\tKIND\tCHANNEL\tROLLOUT\tSIZE\tSHA256")
	for _, rel := range rels {
		f := rel.Facts
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d%%\t%d\t%s\n", f.Hardware, f.Version, f.Kind, f.Channel, f.Rollout, f.Rootfs.Size, f.Rootfs.SHA256)
	}
	return tw.Flush()
}

func openRepo(e *env, dir string) (*tufrepo.Repo, error) {
	return tufrepo.Open(dir, tufrepo.Options{Log: e.log})
}
