package tufrepo

import (
	"fmt"
	"os"

	"github.com/plumb-os/plumb/internal/atomicfile"
)

// writeFile atomically writes path (temp, fsync, rename, fsync dir).
func writeFile(path string, data []byte, perm os.FileMode) error {
	return atomicfile.WriteFile(path, data, perm)
}

// writeNew writes a file that must not exist yet.
func writeNew(path string, data []byte, perm os.FileMode) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("writing %s: already exists", path)
	}
	return atomicfile.WriteFile(path, data, perm)
}

func syncDir(dir string) error { return atomicfile.SyncDir(dir) }
