package plumb

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/plumb-os/plumb/internal/buildinfo"
	"github.com/plumb-os/plumb/internal/cli"
)

// Run runs the plumb command with args (without the program name) and
// returns the process exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &cli.Env{Stdout: stdout, Stderr: stderr}
	var verbose bool
	root := &cobra.Command{
		Use:           "plumb",
		Short:         "Build, publish and verify Plumb OS images",
		Version:       buildinfo.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(*cobra.Command, []string) {
			e.Log = cli.NewLogger(stderr, verbose)
		},
	}
	root.PersistentFlags().BoolVarP(&verbose, "verbose", "v", false, "log debug details to stderr")
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return cli.BadInput(err) })
	root.AddCommand(newBuildCmd(e), newVMCmd(e), newRepoCmd(e), newPublishCmd(e), newServeCmd(e), newDeltaCmd(e), newPlumbAttestCmd(e), newKeysCmd(e))
	err := root.ExecuteContext(ctx)
	if err != nil && cli.IsCobraUsageError(err) {
		err = cli.BadInput(err)
	}
	return cli.ExitCode(err, stderr, "plumb")
}
