package fstree

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Store keeps file contents that arrive as streams (tar members, unpacked
// packages) as content-addressed blobs in a host directory, so a Tree can
// refer to them by path. Identical contents are stored once.
type Store struct {
	dir string
}

// NewStore returns a store keeping blobs under dir, which it creates.
func NewStore(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating blob store: %w", err)
	}
	return &Store{dir: dir}, nil
}

// Put copies r into the store and returns a Source for it and its size.
func (s *Store) Put(r io.Reader) (HostFile, int64, error) {
	tmp, err := os.CreateTemp(s.dir, ".put-*")
	if err != nil {
		return "", 0, fmt.Errorf("storing blob: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), r)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", 0, fmt.Errorf("storing blob: %w", err)
	}
	final := filepath.Join(s.dir, hex.EncodeToString(h.Sum(nil)))
	if err := os.Rename(tmp.Name(), final); err != nil {
		return "", 0, fmt.Errorf("storing blob: %w", err)
	}
	return HostFile(final), n, nil
}
