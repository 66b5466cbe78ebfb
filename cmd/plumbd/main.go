// Command plumbd is the Plumb device agent.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/plumb-os/plumb/internal/cli/plumbd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := plumbd.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
