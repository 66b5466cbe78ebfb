package plumb

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/plumb-os/plumb/internal/cli"
)

// Run runs the plumb command with args (without the program name) and
// returns the process exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cli.Execute(ctx, cli.Command{
		Name: "plumb", Short: "Build, publish and verify Plumb OS images", Logger: cli.NewLogger,
		Verbs: func(e *cli.Env) []*cobra.Command {
			return []*cobra.Command{newBuildCmd(e), newVMCmd(e), newRepoCmd(e), newPublishCmd(e), newServeCmd(e), newDeltaCmd(e), newPlumbAttestCmd(e), newFleetCmd(e), newRolloutCmd(e), newExportCmd(e), newPlumbApproveCmd(e), newKeysCmd(e)}
		},
	}, args, stdout, stderr)
}
