package plumb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/plumb-os/plumb/builder/sbkeys"
	"github.com/plumb-os/plumb/internal/cli"
)

type keysSecureBootOptions struct {
	dir, owner string
}

func newKeysCmd(e *cli.Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Make a device owner's signing keys",
	}
	var o keysSecureBootOptions
	sb := &cobra.Command{
		Use:   "secureboot DIR --owner NAME",
		Short: "Make the UEFI Secure Boot keys (PK, KEK, db) of a new owner and explain enrollment",
		Long: `Secureboot writes a new directory DIR with the owner's Platform Key, Key
Exchange Key and signature database key: for each, NAME.key (PEM, mode
0600), NAME.crt (PEM), NAME.cer (DER) and NAME.esl (EFI signature list), and
owner.guid. It never overwrites: DIR must not exist. db.key and db.crt go
into a recipe's boot.secure_boot; keep PK.key and KEK.key offline.
docs/verified-boot.md explains the chain of trust.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.dir = args[0]
			return runKeysSecureBoot(cmd.Context(), e, o)
		},
	}
	sb.Flags().StringVar(&o.owner, "owner", "", "owner name for the certificates' subjects (required)")
	sb.MarkFlagRequired("owner")
	cmd.AddCommand(sb)
	return cmd
}

func runKeysSecureBoot(_ context.Context, e *cli.Env, o keysSecureBootOptions) error {
	set, err := sbkeys.Generate(o.dir, o.owner, time.Now())
	if errors.Is(err, sbkeys.ErrExists) {
		return cli.BadInput(err)
	}
	if err != nil {
		if o.owner == "" {
			return cli.BadInput(err)
		}
		return err
	}
	fmt.Fprint(e.Stdout, set.Enrollment())
	return nil
}
