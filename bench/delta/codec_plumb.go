package main

import (
	"context"
	"io"

	wire "github.com/plumb-os/plumb/format/delta"

	"github.com/plumb-os/plumb/builder/delta"
)

// plumbCodec is Plumb's own codec, builder/delta, with its default options.
func plumbCodec() (codec, error) { return plumbDelta{}, nil }

type plumbDelta struct{}

func (plumbDelta) encode(ctx context.Context, w io.Writer, old, new io.ReaderAt, oldSize, newSize int64) error {
	_, err := delta.Encode(ctx, w, old, new, oldSize, newSize, delta.Options{})
	return err
}

func (plumbDelta) apply(ctx context.Context, w io.Writer, old io.ReaderAt, oldSize int64, bundle io.Reader) error {
	_, err := wire.Apply(ctx, w, old, oldSize, bundle)
	return err
}
