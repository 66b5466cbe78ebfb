package verity

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// veritysetup returns the path of cryptsetup's veritysetup, failing (or
// skipping under -short) when it is missing.
func veritysetup(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("veritysetup")
	if err != nil {
		if testing.Short() {
			t.Skip("veritysetup not installed (apt-get install cryptsetup-bin)")
		}
		t.Fatal("veritysetup not installed: apt-get install cryptsetup-bin (make deps)")
	}
	return p
}

func randomImage(t *testing.T, size int64, seed uint64) []byte {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestFormatVerifiesWithVeritysetup formats slots of several sizes (one
// level of hashes, two levels, a partial last block) and has veritysetup
// check them, then checks that a flipped data byte and a flipped hash byte
// are refused by veritysetup and by Check.
func TestFormatVerifiesWithVeritysetup(t *testing.T) {
	vs := veritysetup(t)
	dir := t.TempDir()
	salt := sha256.Sum256([]byte("test salt"))
	for _, size := range []int64{BlockSize, 5000, 128*BlockSize + 17, 300 * BlockSize} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			img := randomImage(t, size, uint64(size))
			slotPath := filepath.Join(dir, fmt.Sprintf("slot-%d", size))
			// Leftovers of an older image after the new one must not matter.
			junk := randomImage(t, SlotSize(size)+8192, 99)
			copy(junk, img)
			if err := os.WriteFile(slotPath, junk, 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(slotPath, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			p, err := Format(f, size, salt[:])
			if err != nil {
				t.Fatal(err)
			}
			if p.DataBlocks != DataBlocksFor(size) || p.HashOffset != p.DataBlocks*BlockSize {
				t.Fatalf("params %+v for %d bytes", p, size)
			}
			run := func(extra ...string) (string, error) {
				args := append([]string{"verify", slotPath, slotPath, hex.EncodeToString(p.RootHash), fmt.Sprintf("--hash-offset=%d", p.HashOffset)}, extra...)
				out, err := exec.Command(vs, args...).CombinedOutput()
				return string(out), err
			}
			if out, err := run(); err != nil {
				t.Fatalf("veritysetup verify: %v\n%s", err, out)
			}
			// Without the superblock: every parameter on the command line,
			// as plumb-init gives them to the kernel.
			if out, err := run("--no-superblock", "--hash=sha256", fmt.Sprintf("--data-blocks=%d", p.DataBlocks),
				"--salt="+hex.EncodeToString(p.Salt), fmt.Sprintf("--hash-offset=%d", p.HashOffset+BlockSize)); err != nil {
				t.Fatalf("veritysetup verify --no-superblock: %v\n%s", err, out)
			}
			if err := Check(f, p); err != nil {
				t.Fatalf("Check: %v", err)
			}

			for _, c := range []struct {
				name string
				off  int64
			}{{"data byte", size / 2}, {"hash byte", int64(p.HashOffset) + BlockSize + 3}} {
				if c.name == "hash byte" && p.DataBlocks == 1 {
					continue // one block: its hash is the root, there is no tree
				}
				var b [1]byte
				f.ReadAt(b[:], c.off)
				f.WriteAt([]byte{b[0] ^ 0x40}, c.off)
				if out, err := run(); err == nil {
					t.Errorf("%s flipped: veritysetup verify passed:\n%s", c.name, out)
				}
				if err := Check(f, p); !errors.Is(err, ErrMismatch) {
					t.Errorf("%s flipped: Check = %v, want ErrMismatch", c.name, err)
				}
				f.WriteAt(b[:], c.off)
			}
		})
	}
}

// TestBuildMatchesVeritysetupFormat checks the tree against one veritysetup
// itself writes for the same data and salt: same root hash, same bytes.
func TestBuildMatchesVeritysetupFormat(t *testing.T) {
	vs := veritysetup(t)
	dir := t.TempDir()
	size := int64(200 * BlockSize)
	img := randomImage(t, size, 7)
	data := filepath.Join(dir, "data")
	if err := os.WriteFile(data, img, 0o644); err != nil {
		t.Fatal(err)
	}
	salt := bytes.Repeat([]byte{0xab}, SaltSize)
	theirs := filepath.Join(dir, "hash")
	out, err := exec.Command(vs, "format", data, theirs, "--hash=sha256", "--salt="+hex.EncodeToString(salt),
		"--uuid=00000000-0000-4000-8000-000000000000").CombinedOutput()
	if err != nil {
		t.Fatalf("veritysetup format: %v\n%s", err, out)
	}
	var root string
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "Root hash:"); ok {
			root = strings.TrimSpace(v)
		}
	}
	ours := &hashArea{}
	p, err := Build(bytes.NewReader(img), size, salt, ours)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(p.RootHash); got != root {
		t.Fatalf("root hash = %s, veritysetup format says %s", got, root)
	}
	want, err := os.ReadFile(theirs)
	if err != nil {
		t.Fatal(err)
	}
	// Same tree after the superblock (which differs only in its uuid).
	if !bytes.Equal(ours.b[BlockSize:], want[BlockSize:len(ours.b)]) {
		t.Errorf("hash tree differs from veritysetup's")
	}
	if !bytes.Equal(ours.b[:16], want[:16]) || !bytes.Equal(ours.b[32:superblockSize], want[32:superblockSize]) {
		t.Errorf("superblock differs from veritysetup's outside the uuid:\nours   %x\ntheirs %x", ours.b[:superblockSize], want[:superblockSize])
	}
}

func TestCmdlineRoundTrip(t *testing.T) {
	p := &Params{RootHash: bytes.Repeat([]byte{1}, 32), Salt: []byte{2, 3}, DataBlocks: 10, HashOffset: 10 * BlockSize}
	args := map[string]string{}
	for _, w := range strings.Fields(p.Cmdline() + " console=ttyS0") {
		k, v, _ := strings.Cut(w, "=")
		args[k] = v
	}
	got, err := FromCmdline(args)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(p) {
		t.Errorf("FromCmdline(Cmdline()) = %+v, want %+v", got, p)
	}
	if _, err := FromCmdline(map[string]string{"console": "ttyS0"}); !errors.Is(err, ErrNone) {
		t.Errorf("no verity words: err = %v, want ErrNone", err)
	}
	bad := map[string]string{}
	for k, v := range args {
		bad[k] = v
	}
	bad[ArgOffset] = "4096"
	_, err = FromCmdline(bad)
	if err == nil || !strings.Contains(err.Error(), "hash offset: expected 40960") {
		t.Errorf("wrong offset: err = %v", err)
	}
	delete(bad, ArgRoot)
	if _, err := FromCmdline(bad); err == nil || !strings.Contains(err.Error(), ArgRoot) {
		t.Errorf("missing root: err = %v", err)
	}
	_, target, targs := p.Table("/dev/vda2")
	if target != "verity" || !strings.HasPrefix(targs, "1 /dev/vda2 /dev/vda2 4096 4096 10 11 sha256 ") {
		t.Errorf("Table = %s %s", target, targs)
	}
}

// BenchmarkFormat is the device's cost of writing a slot's tree: hashing
// 64 MiB of image (reported as MB/s) plus writing and reading back the tree.
func BenchmarkFormat(b *testing.B) {
	const size = 64 << 20
	f, err := os.Create(filepath.Join(b.TempDir(), "slot"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(SlotSize(size)); err != nil {
		b.Fatal(err)
	}
	salt := make([]byte, SaltSize)
	b.SetBytes(size)
	for b.Loop() {
		if _, err := Format(f, size, salt); err != nil {
			b.Fatal(err)
		}
	}
}
