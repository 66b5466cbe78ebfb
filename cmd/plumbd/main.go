// Command plumbd is the Plumb device agent.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/plumb-os/plumb/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.RunPlumbd(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
