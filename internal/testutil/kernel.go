package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// DebianKernel returns boot/vmlinuz-* of the cached Debian cloud kernel
// package of the given ABI (a test package of make debs, e.g. "6.1.0-56":
// an LZ4 bzImage). The test fails when the package is not in the cache.
func DebianKernel(t testing.TB, abi string) []byte {
	t.Helper()
	RequireTool(t, "dpkg-deb", "dpkg")
	glob := "linux-image-" + abi + "-cloud-amd64_*.deb"
	debs, _ := filepath.Glob(filepath.Join(CacheDir(t), "debs", glob))
	if len(debs) == 0 {
		t.Fatalf("no %s in the package cache: run make debs", glob)
	}
	dir := t.TempDir()
	out, err := exec.Command("sh", "-c", `dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" --wildcards './boot/vmlinuz-*'`, "sh", debs[0], dir).CombinedOutput()
	if err != nil {
		t.Fatalf("unpacking %s: %v: %s", debs[0], err, out)
	}
	got, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(got) != 1 {
		t.Fatalf("%s: expected one boot/vmlinuz-*, found %d", debs[0], len(got))
	}
	b, err := os.ReadFile(got[0])
	if err != nil {
		t.Fatal(err)
	}
	return b
}
