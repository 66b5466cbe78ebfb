package iox

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"strings"
	"testing"
)

type failWriter struct{ after int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.after <= 0 {
		return 0, errors.New("disk full")
	}
	n := min(len(p), f.after)
	f.after -= n
	return n, nil
}

func TestWrappers(t *testing.T) {
	cr := &CountingReader{R: strings.NewReader("hello world")}
	var out bytes.Buffer
	hw := &HashWriter{W: &out, H: sha256.New()}
	cw := &CountingWriter{W: hw}
	if _, err := io.Copy(cw, cr); err != nil {
		t.Fatal(err)
	}
	if cr.N != 11 || cw.N != 11 || hw.N != 11 || out.String() != "hello world" {
		t.Errorf("counts %d %d %d, out %q", cr.N, cw.N, hw.N, out.String())
	}
	if want := sha256.Sum256([]byte("hello world")); !bytes.Equal(hw.H.Sum(nil), want[:]) {
		t.Error("HashWriter hashed something else")
	}
	ew := &ErrWriter{W: &failWriter{after: 3}}
	ew.Write([]byte("ab"))
	ew.Write([]byte("cd"))
	ew.Write([]byte("ef"))
	if ew.Err == nil || ew.Err.Error() != "disk full" {
		t.Errorf("ErrWriter.Err = %v, want the first error", ew.Err)
	}
}
