// Package iox holds the small io wrappers the project shares, one copy
// each: counting readers and writers, a hashing writer, and a writer that
// remembers its first error. It imports only the standard library, so the
// format layer may use it. (Context-aware readers are internal/ctxio.)
package iox

import (
	"hash"
	"io"
)

// CountingReader counts the bytes read from R in N.
type CountingReader struct {
	R io.Reader
	N int64
}

func (c *CountingReader) Read(p []byte) (int, error) {
	n, err := c.R.Read(p)
	c.N += int64(n)
	return n, err
}

// CountingWriter counts the bytes written to W in N.
type CountingWriter struct {
	W io.Writer
	N int64
}

func (c *CountingWriter) Write(p []byte) (int, error) {
	n, err := c.W.Write(p)
	c.N += int64(n)
	return n, err
}

// HashWriter writes to W, hashing (H) and counting (N) what W took.
type HashWriter struct {
	W io.Writer
	H hash.Hash
	N int64
}

func (hw *HashWriter) Write(p []byte) (int, error) {
	n, err := hw.W.Write(p)
	hw.H.Write(p[:n])
	hw.N += int64(n)
	return n, err
}

// ErrWriter writes to W and keeps W's first error in Err, so a caller can
// tell a failure of its output (disk full) from one of its input.
type ErrWriter struct {
	W   io.Writer
	Err error
}

func (e *ErrWriter) Write(p []byte) (int, error) {
	n, err := e.W.Write(p)
	if err != nil && e.Err == nil {
		e.Err = err
	}
	return n, err
}
