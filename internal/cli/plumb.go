package cli

import (
	"context"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/plumb-os/plumb/internal/buildinfo"
)

// env is what every verb gets besides its options: output streams and the
// logger.
type env struct {
	stdout, stderr io.Writer
	log            *slog.Logger
}

// RunPlumb runs the plumb command with args (without the program name) and
// returns the process exit code.
func RunPlumb(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr}
	var verbose bool
	root := &cobra.Command{
		Use:           "plumb",
		Short:         "Build, publish and verify Plumb OS images",
		Version:       buildinfo.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(*cobra.Command, []string) {
			e.log = newLogger(stderr, verbose)
		},
	}
	root.PersistentFlags().BoolVarP(&verbose, "verbose", "v", false, "log debug details to stderr")
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return badInput(err) })
	root.AddCommand(newBuildCmd(e), newVMCmd(e), newRepoCmd(e), newPublishCmd(e), newServeCmd(e), newDeltaCmd(e), newPlumbAttestCmd(e), newKeysCmd(e))
	err := root.ExecuteContext(ctx)
	if err != nil && isCobraUsageError(err) {
		err = badInput(err)
	}
	return exitCode(err, stderr, "plumb")
}

func newLogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

func newDeviceLogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}
