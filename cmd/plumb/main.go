// Command plumb builds, publishes and verifies Plumb OS images.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/plumb-os/plumb/internal/cli/plumb"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := plumb.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
