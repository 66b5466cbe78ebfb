package plumb

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/plumb-os/plumb/builder/tufrepo"
	"github.com/plumb-os/plumb/internal/cli"
)

func init() { cli.RegisterBadInput(tufrepo.ErrInvalid) }

type repoOptions struct {
	dir       string
	jsonOut   bool
	threshold []string // ROLE=N, from repeated --threshold
}

func newRepoCmd(e *cli.Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "repo",
		Short: "Create and maintain a TUF update repository",
		Long: `A repository directory holds:
  keys/root.key                  the root key: keep it offline, copy it in only for "plumb repo rotate"
  keys/{targets,snapshot,timestamp}.key
  keys/<role>-2.key …            a role's further keys when its threshold is above 1
  repository/metadata/           TUF metadata (served as BASE/metadata/)
  repository/targets/            release images (served as BASE/targets/)

Serve DIR/repository with "plumb serve DIR" or any static web server.`,
	}
	cmd.AddCommand(newRepoInitCmd(e), newRepoRefreshCmd(e), newRepoRotateCmd(e), newRepoLsCmd(e), newRepoKeysCmd(e))
	return cmd
}

func newRepoInitCmd(e *cli.Env) *cobra.Command {
	var o repoOptions
	cmd := &cobra.Command{
		Use:   "init DIR",
		Short: "Create a repository with new keys (DIR must be empty or missing)",
		Long: `Create a repository with new keys (DIR must be empty or missing).

--threshold ROLE=N (repeatable) gives ROLE N keys, all of which must sign its
metadata: keys/ROLE.key, keys/ROLE-2.key … keys/ROLE-N.key. The default is 1.`,
		Example: "  plumb repo init /srv/repo --threshold root=2 --threshold targets=2",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.dir = args[0]
			return runRepoInit(cmd.Context(), e, o)
		},
	}
	cmd.Flags().StringArrayVar(&o.threshold, "threshold", nil, "ROLE=N: number of keys, all required, for root, targets, snapshot or timestamp (repeatable; default 1)")
	return cmd
}

// parseThresholds parses repeated --threshold ROLE=N values; tufrepo
// checks the role names and ranges.
func parseThresholds(vals []string) (map[string]int, error) {
	m := map[string]int{}
	for _, v := range vals {
		role, num, ok := strings.Cut(v, "=")
		n, err := strconv.Atoi(num)
		if !ok || role == "" || err != nil {
			return nil, cli.BadInput(fmt.Errorf("--threshold: expected ROLE=N (e.g. root=2), got %q", v))
		}
		if _, dup := m[role]; dup {
			return nil, cli.BadInput(fmt.Errorf("--threshold: role %q given twice", role))
		}
		m[role] = n
	}
	return m, nil
}

func runRepoInit(ctx context.Context, e *cli.Env, o repoOptions) error {
	thr, err := parseThresholds(o.threshold)
	if err != nil {
		return err
	}
	if err := tufrepo.Init(ctx, o.dir, tufrepo.Options{Log: e.Log, Threshold: thr}); err != nil {
		return err
	}
	r, err := openRepo(e, o.dir)
	if err != nil {
		return err
	}
	roles, err := r.Keys()
	if err != nil {
		return err
	}
	var rootKeys []string
	for _, rk := range roles {
		if rk.Role == "root" {
			for _, k := range rk.Keys {
				rootKeys = append(rootKeys, filepath.Join(o.dir, k.File))
			}
		}
	}
	n := len(rootKeys)
	if n == 1 {
		fmt.Fprintf(e.Stdout, "created repository %s\nmove %s offline: it is needed only to rotate keys\n", o.dir, rootKeys[0])
		return nil
	}
	fmt.Fprintf(e.Stdout, "created repository %s\nmove %s offline, each to its holder: all %d are needed to rotate keys\n",
		o.dir, strings.Join(rootKeys, ", "), n)
	return nil
}

func newRepoRefreshCmd(e *cli.Env) *cobra.Command {
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

func newRepoRotateCmd(e *cli.Env) *cobra.Command {
	return &cobra.Command{
		Use:   "rotate DIR ROLE",
		Short: "Replace all keys of a role (root, targets, snapshot or timestamp); needs the root keys",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := openRepo(e, args[0])
			if err != nil {
				return err
			}
			if err := r.Rotate(cmd.Context(), args[1]); err != nil {
				return err
			}
			fmt.Fprintf(e.Stdout, "rotated the %s key\n", args[1])
			if args[1] == "root" {
				fmt.Fprintf(e.Stdout, "move the new %s offline again\n", filepath.Join(args[0], "keys", "root*.key"))
			}
			return nil
		},
	}
}

func newRepoLsCmd(e *cli.Env) *cobra.Command {
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

func runRepoLs(_ context.Context, e *cli.Env, o repoOptions) error {
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
		return cli.PrintJSON(e.Stdout, rels)
	}
	tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HARDWARE\tVERSION\tKIND\tCHANNEL\tROLLOUT\tSIZE\tFILE")
	for _, rel := range rels {
		f := rel.Facts
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d%%\t%d\t%s\n", f.Hardware, f.Version, f.Kind, f.Channel, f.Rollout, rel.Length, rel.File)
	}
	return tw.Flush()
}

func newRepoKeysCmd(e *cli.Env) *cobra.Command {
	var o repoOptions
	cmd := &cobra.Command{
		Use:   "keys DIR",
		Short: "List each role's signature threshold, key ids and key files present",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.dir = args[0]
			return runRepoKeys(cmd.Context(), e, o)
		},
	}
	cmd.Flags().BoolVar(&o.jsonOut, "json", false, "print the roles as JSON")
	return cmd
}

func runRepoKeys(_ context.Context, e *cli.Env, o repoOptions) error {
	r, err := openRepo(e, o.dir)
	if err != nil {
		return err
	}
	roles, err := r.Keys()
	if err != nil {
		return err
	}
	if o.jsonOut {
		return cli.PrintJSON(e.Stdout, roles)
	}
	tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLE\tTHRESHOLD\tKEY ID\tFILE\tTARGET PATHS")
	for _, rk := range roles {
		for _, k := range rk.Keys {
			file := k.File
			if file == "" {
				file = "(not in keys/)"
			}
			paths := "(all but delegated)"
			switch {
			case len(rk.Paths) > 0:
				paths = strings.Join(rk.Paths, " ")
			case rk.Role != "targets":
				paths = "-"
			}
			fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%s\t%s\n", rk.Role, rk.Threshold, len(rk.Keys), k.ID, file, paths)
		}
	}
	return tw.Flush()
}

func openRepo(e *cli.Env, dir string) (*tufrepo.Repo, error) {
	return tufrepo.Open(dir, tufrepo.Options{Log: e.Log})
}
