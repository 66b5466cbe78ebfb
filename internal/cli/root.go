package cli

import (
	"context"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/plumb-os/plumb/internal/buildinfo"
)

// Command describes one of the two commands for Execute.
type Command struct {
	Name, Short string
	// Logger makes the verbs' logger once the flags are parsed
	// (NewLogger for plumb, NewDeviceLogger for plumbd).
	Logger func(w io.Writer, verbose bool) *slog.Logger
	// Verbs makes the subcommands, given the environment they share.
	Verbs func(e *Env) []*cobra.Command
}

// Execute runs c with args (without the program name) and returns the
// process exit code: flags and usage errors are bad input (2), and every
// error is reported on stderr as one line (ExitCode).
func Execute(ctx context.Context, c Command, args []string, stdout, stderr io.Writer) int {
	e := &Env{Stdout: stdout, Stderr: stderr}
	var verbose bool
	root := &cobra.Command{
		Use:           c.Name,
		Short:         c.Short,
		Version:       buildinfo.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(*cobra.Command, []string) {
			e.Log = c.Logger(stderr, verbose)
		},
	}
	root.PersistentFlags().BoolVarP(&verbose, "verbose", "v", false, "log debug details to stderr")
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return BadInput(err) })
	root.AddCommand(c.Verbs(e)...)
	err := root.ExecuteContext(ctx)
	if err != nil && IsCobraUsageError(err) {
		err = BadInput(err)
	}
	return ExitCode(err, stderr, c.Name)
}
