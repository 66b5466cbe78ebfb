// Package ctxio ties long copies to a context: a Reader that stops with the
// context's error once it ends.
package ctxio

import (
	"context"
	"io"
)

// Reader returns r that fails with ctx.Err() on the first Read after ctx
// ends, so an io.Copy of a large image stops promptly on cancellation.
func Reader(ctx context.Context, r io.Reader) io.Reader { return reader{ctx, r} }

type reader struct {
	ctx context.Context
	r   io.Reader
}

func (c reader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
