package delta

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	wire "github.com/plumb-os/plumb/format/delta"

	"github.com/plumb-os/plumb/builder/squashfs"
	"github.com/plumb-os/plumb/format/blockcodec"
	"github.com/plumb-os/plumb/internal/fstree"
)

// pseudoText makes compressible, seed-dependent content (like binaries and
// text in a root filesystem: repeats with variation).
func pseudoText(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	words := []string{"module", "version", "linux", "6.1.0-56", "symbol", "kernel", "init", "\x00\x00\x01", "ELF", "busybox", "\n"}
	var b bytes.Buffer
	for b.Len() < n {
		if r.IntN(10) == 0 {
			fmt.Fprintf(&b, "%08x", r.Uint32())
		} else {
			b.WriteString(words[r.IntN(len(words))])
		}
		b.WriteByte(' ')
	}
	return b.Bytes()[:n]
}

// tree is a description of a test tree: path -> content (nil = directory).
type tree map[string][]byte

func baseTree() tree {
	t := tree{
		"etc":                 nil,
		"etc/hostname":        []byte("plumb\n"),
		"etc/os-release":      pseudoText(1, 300),
		"usr/bin/busybox":     pseudoText(2, 900_000),
		"usr/lib/libc.so.6":   pseudoText(3, 400_000),
		"boot/vmlinuz":        pseudoText(4, 2_000_000),
		"var/empty":           nil,
		"usr/share/zeros.img": make([]byte, 300_000),
	}
	for i := range 40 {
		t[fmt.Sprintf("lib/modules/6.1.0-56-cloud-amd64/kernel/m%02d.ko", i)] = pseudoText(uint64(100+i), 3000+i*997)
	}
	return t
}

func (tr tree) clone() tree {
	c := tree{}
	for k, v := range tr {
		c[k] = v
	}
	return c
}

// build writes tr as a squashfs image and returns its path and bytes.
func build(t testing.TB, tr tree, perms map[string]fs.FileMode) (string, []byte) {
	t.Helper()
	ft := fstree.New()
	for p, c := range tr {
		if c == nil {
			if err := ft.MkdirAll(p, 1000); err != nil {
				t.Fatal(err)
			}
			continue
		}
		mode := fs.FileMode(0o644)
		if m, ok := perms[p]; ok {
			mode = m
		}
		if err := ft.Put(p, &fstree.Node{Mode: mode, ModTime: 1000, Size: int64(len(c)), Source: fstree.Bytes(c)}); err != nil {
			t.Fatal(err)
		}
	}
	ft.SetTimes(1000, false)
	f, err := os.Create(filepath.Join(t.TempDir(), "img.sqfs"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := squashfs.Write(t.Context(), f, ft, squashfs.Options{ModTime: 1000, Workers: 2}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return f.Name(), b
}

func buildF(f *testing.F, tr tree) []byte {
	_, b := build(f, tr, nil)
	return b
}

func roundTrip(t *testing.T, oldImg, newImg []byte, opts Options) (wire.Stats, []byte) {
	t.Helper()
	var bundle bytes.Buffer
	st, err := Encode(t.Context(), &bundle, bytes.NewReader(oldImg), bytes.NewReader(newImg), int64(len(oldImg)), int64(len(newImg)), opts)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	var out bytes.Buffer
	ast, err := wire.Apply(t.Context(), &out, bytes.NewReader(oldImg), int64(len(oldImg)), bytes.NewReader(bundle.Bytes()))
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if !bytes.Equal(out.Bytes(), newImg) {
		t.Fatalf("Apply result differs from the new image (%d vs %d bytes)", out.Len(), len(newImg))
	}
	if ast.BundleBytes != int64(bundle.Len()) || st.BundleBytes != int64(bundle.Len()) {
		t.Errorf("BundleBytes = %d (encode), %d (apply), want %d", st.BundleBytes, ast.BundleBytes, bundle.Len())
	}
	return st, bundle.Bytes()
}

func TestRoundTrip(t *testing.T) {
	base := baseTree()
	changed := base.clone()
	changed["lib/modules/6.1.0-56-cloud-amd64/kernel/m07.ko"] = append(bytes.Clone(base["lib/modules/6.1.0-56-cloud-amd64/kernel/m07.ko"]), "patched"...)
	bb := bytes.Clone(base["usr/bin/busybox"])
	copy(bb[500_000:], "a small change in the middle of a big file")
	changed["usr/bin/busybox"] = bb
	added := base.clone()
	added["usr/bin/new-tool"] = pseudoText(77, 200_000)
	added["etc/new.conf"] = []byte("new=1\n")
	removed := base.clone()
	delete(removed, "usr/lib/libc.so.6")
	delete(removed, "lib/modules/6.1.0-56-cloud-amd64/kernel/m03.ko")
	renamed := tree{}
	for p, c := range base {
		renamed[strings.ReplaceAll(p, "6.1.0-56", "6.1.0-57")] = c
	}
	renamed["lib/modules/6.1.0-57-cloud-amd64/kernel/m09.ko"] = append([]byte("v57 "), base["lib/modules/6.1.0-56-cloud-amd64/kernel/m09.ko"]...)
	different := tree{}
	for i := range 30 {
		different[fmt.Sprintf("opt/x/f%d", i)] = pseudoText(uint64(1000+i), 1000+i*5000)
	}

	tests := []struct {
		name     string
		new      tree
		perms    map[string]fs.FileMode
		maxRatio float64 // bundle bytes / new image bytes
	}{
		{"identical", base, nil, 0.002},
		{"file changed", changed, nil, 0.2},
		{"files added", added, nil, 0.3},
		{"files removed", removed, nil, 0.2},
		{"renamed", renamed, nil, 0.2},
		{"permissions", base, map[string]fs.FileMode{"usr/bin/busybox": 0o755, "etc/hostname": 0o600}, 0.1},
		{"different tree", different, nil, 1.1},
	}
	_, oldImg := build(t, base, nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, newImg := build(t, tc.new, tc.perms)
			for _, opts := range []Options{{}, {NoRecompress: true}} {
				st, bundle := roundTrip(t, oldImg, newImg, opts)
				ratio := float64(len(bundle)) / float64(len(newImg))
				t.Logf("%s no-recompress=%v: image %d bytes, bundle %d bytes (%.4f): %+v", tc.name, opts.NoRecompress, len(newImg), len(bundle), ratio, st)
				if ratio > tc.maxRatio {
					t.Errorf("bundle/image = %.4f, want <= %.4f", ratio, tc.maxRatio)
				}
			}
		})
	}
}

// TestUnsquashfs checks that the test images are real squashfs images.
func TestUnsquashfs(t *testing.T) {
	if _, err := exec.LookPath("unsquashfs"); err != nil {
		if testing.Short() {
			t.Skip("unsquashfs not found")
		}
		t.Fatal("unsquashfs not found: apt-get install squashfs-tools")
	}
	p, _ := build(t, baseTree(), nil)
	out, err := exec.CommandContext(t.Context(), "unsquashfs", "-lls", p).CombinedOutput()
	if err != nil {
		t.Fatalf("unsquashfs -l: %v\n%s", err, out)
	}
	im, err := readSqImage(bytes.NewReader(mustRead(t, p)), int64(len(mustRead(t, p))))
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "-") {
			want++
		}
	}
	if got := len(im.files); got != want {
		t.Logf("unsquashfs -l:\n%s", out)
		t.Errorf("parsed %d regular files, unsquashfs lists %d", got, want)
	}
}

func mustRead(t *testing.T, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestApplyRefuses(t *testing.T) {
	base := baseTree()
	next := base.clone()
	next["etc/hostname"] = []byte("plumb2\n")
	next["usr/bin/busybox"] = append(bytes.Clone(base["usr/bin/busybox"]), 1, 2, 3)
	_, oldImg := build(t, base, nil)
	_, newImg := build(t, next, nil)
	_, bundle := roundTrip(t, oldImg, newImg, Options{})
	flip := func(i int) []byte { b := bytes.Clone(bundle); b[i] ^= 0x40; return b }
	wrongBase := bytes.Clone(oldImg)
	wrongBase[200] ^= 1

	tests := []struct {
		name   string
		old    []byte
		bundle []byte
		want   string
		wrote  bool // may have written before failing
	}{
		{"wrong magic", oldImg, flip(0), "magic", false},
		{"wrong version", oldImg, flip(8), "version", false},
		{"corrupt header", oldImg, flip(30), "checksum", false},
		{"truncated header", oldImg, bundle[:40], "truncated", false},
		{"wrong base", wrongBase, bundle, "not this bundle's base", false},
		{"wrong base size", oldImg[:len(oldImg)-4096], bundle, "not this bundle's base", false},
		{"truncated body", oldImg, bundle[:len(bundle)-len(bundle)/3], "", true},
		{"corrupt body", oldImg, flip(len(bundle) / 2), "", true},
		{"corrupt body end", oldImg, flip(len(bundle) - 3), "", true},
		{"random bytes", oldImg, pseudoText(5, 5000), "magic", false},
		{"empty", oldImg, nil, "truncated", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			_, err := wire.Apply(t.Context(), &out, bytes.NewReader(tc.old), int64(len(tc.old)), bytes.NewReader(tc.bundle))
			if err == nil {
				t.Fatal("Apply succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Apply error = %q, want one line containing %q", err, tc.want)
			}
			if !tc.wrote && out.Len() > 0 {
				t.Errorf("Apply wrote %d bytes before refusing", out.Len())
			}
			if tc.name == "wrong base" && !errors.Is(err, wire.ErrWrongBase) {
				t.Errorf("error %v is not wire.ErrWrongBase", err)
			}
		})
	}
}

func TestReadHeader(t *testing.T) {
	_, oldImg := build(t, baseTree(), nil)
	_, bundle := roundTrip(t, oldImg, oldImg, Options{})
	h, err := wire.ReadHeader(bytes.NewReader(bundle))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(oldImg)
	if h.BaseSHA256 != sum || h.TargetSHA256 != sum || h.TargetSize != int64(len(oldImg)) || h.Version != wire.Version || h.Compressor != blockcodec.CompressorID || h.Level != 15 || h.BlockSize != 128<<10 {
		t.Errorf("ReadHeader = %+v, want base = target = %x, size %d, compressor %q level 15 block 131072", h, sum, len(oldImg), blockcodec.CompressorID)
	}
}

// zstdStream compresses b as builder/initramfs does.
func zstdStream(t testing.TB, b []byte) []byte {
	var out bytes.Buffer
	enc, err := wire.NewInnerEncoder(&out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enc.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestInnerZstd: a compressed initramfs whose archive changed a little near
// its start (every compressed byte after it differs) is patched as its
// uncompressed stream, so the bundle is a small fraction of the new file.
func TestInnerZstd(t *testing.T) {
	archive := pseudoText(9, 1_500_000)
	base := baseTree()
	base["boot/initrd.img"] = zstdStream(t, archive)
	next := base.clone()
	changed := bytes.Clone(archive)
	copy(changed[1000:], "a changed module version string 6.1.0-57")
	next["boot/initrd.img"] = zstdStream(t, changed)
	_, oldImg := build(t, base, nil)
	_, newImg := build(t, next, nil)
	st, bundle := roundTrip(t, oldImg, newImg, Options{})
	t.Logf("initrd %d bytes compressed, bundle %d bytes: %+v", len(next["boot/initrd.img"]), len(bundle), st)
	if limit := len(next["boot/initrd.img"]) / 50; len(bundle) > limit {
		t.Errorf("bundle = %d bytes, want <= %d (2%% of the compressed initrd): the inner stream was not patched", len(bundle), limit)
	}
}
