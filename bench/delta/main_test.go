package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSameFile(t *testing.T) {
	dir := t.TempDir()
	big := bytes.Repeat([]byte("plumb"), 300_000) // > 1 MiB: crosses a chunk
	flipped := bytes.Clone(big)
	flipped[1<<20+7] ^= 1
	tests := []struct {
		name    string
		a, b    []byte
		wantErr string // "" means equal
	}{
		{"equal", big, big, ""},
		{"empty", nil, nil, ""},
		{"flipped byte in second chunk", big, flipped, "at byte 1048583"},
		{"shorter", big[:10], big, "at byte 10"},
		{"longer", big, big[:10], "at byte 10"},
	}
	for _, tt := range tests {
		a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
		if err := os.WriteFile(a, tt.a, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(b, tt.b, 0o644); err != nil {
			t.Fatal(err)
		}
		err := sameFile(a, b)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: sameFile = %v, want nil", tt.name, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: sameFile = %v, want an error containing %q", tt.name, err, tt.wantErr)
		}
	}
}

func TestZstdCodecRoundTrip(t *testing.T) {
	newImg := bytes.Repeat([]byte("squashfs block "), 100_000)
	var bundle bytes.Buffer
	c := zstdCodec{}
	if err := c.encode(t.Context(), &bundle, nil, bytes.NewReader(newImg), 0, int64(len(newImg))); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := c.apply(t.Context(), &got, nil, 0, &bundle); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), newImg) {
		t.Errorf("apply(encode(new)) = %d bytes, want the %d bytes of new", got.Len(), len(newImg))
	}
}

func TestNewCodecRejectsUnknown(t *testing.T) {
	_, err := newCodec("bsdiff")
	if want := `-codec: expected plumb or zstd, got "bsdiff"`; err == nil || err.Error() != want {
		t.Errorf("newCodec(%q) = %v, want %q", "bsdiff", err, want)
	}
}
