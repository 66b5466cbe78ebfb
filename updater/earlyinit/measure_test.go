package earlyinit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/builder/squashfs"
	"github.com/plumb-os/plumb/format/bootrecord"
	"github.com/plumb-os/plumb/internal/fstree"
	"github.com/plumb-os/plumb/internal/testutil"
)

func TestExpectedPCR15(t *testing.T) {
	rootfs := strings.Repeat("ab", 32)
	got, err := bootrecord.ExpectedPCR15(rootfs, "1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	// By hand: PCR = sha256(PCR || digest), twice, from zeros.
	d1, _ := hex.DecodeString(rootfs)
	d2 := sha256.Sum256([]byte("1.2.3"))
	v := make([]byte, 32)
	for _, d := range [][]byte{d1, d2[:]} {
		s := sha256.Sum256(append(v, d...))
		v = s[:]
	}
	if want := hex.EncodeToString(v); got != want {
		t.Errorf("ExpectedPCR15 = %s, want %s", got, want)
	}
	if _, err := bootrecord.ExpectedPCR15("zz", "1.2.3"); err == nil {
		t.Error("ExpectedPCR15 with a bad digest: no error")
	}
}

// TestHashImage checks that the image hashed on a partition (a file larger
// than the image, with other bytes after it) has the sha256 and size of the
// image file the builder wrote.
func TestHashImage(t *testing.T) {
	dir := t.TempDir()
	tree := fstree.New()
	content := bytes.Repeat([]byte("plumb "), 5000)
	if err := tree.Put("etc/plumb/release.json", &fstree.Node{Mode: 0o644, Size: int64(len(content)), Source: fstree.Bytes(content)}); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "rootfs.sqfs")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	st, err := squashfs.Write(t.Context(), f, tree, squashfs.Options{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(data)
	part := filepath.Join(dir, "partition")
	if err := os.WriteFile(part, append(data, bytes.Repeat([]byte{0xa5}, 3<<20)...), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, size, err := HashImage(t.Context(), part)
	if err != nil {
		t.Fatal(err)
	}
	if sum != hex.EncodeToString(want[:]) || size != int64(len(data)) || size != st.Bytes {
		t.Errorf("HashImage = %s, %d; want %x, %d (stats %d)", sum, size, want, len(data), st.Bytes)
	}

	// Not a squashfs, or a superblock claiming more than the device holds.
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, make([]byte, 8192), 0o644)
	if _, _, err := HashImage(t.Context(), bad); err == nil || !strings.Contains(err.Error(), "magic") {
		t.Errorf("HashImage(zeros) = %v, want a magic error", err)
	}
	big := append([]byte(nil), data...)
	binary.LittleEndian.PutUint64(big[40:], 1<<40)
	os.WriteFile(bad, big, 0o644)
	if _, _, err := HashImage(t.Context(), bad); err == nil || !strings.Contains(err.Error(), "bytes_used") {
		t.Errorf("HashImage(huge bytes_used) = %v, want a bytes_used error", err)
	}
}

// TestExtendPCR extends PCR 15 of a real TPM (swtpm) the way plumb-init
// does and reads it back: it must equal the replay of the log.
func TestExtendPCR(t *testing.T) {
	tpm := startSwtpm(t)
	m := &measurer{tpm: tpm}
	ms := []bootrecord.Measurement{bootrecord.RootfsMeasurement(strings.Repeat("0123456789abcdef", 4)), bootrecord.ReleaseMeasurement("2.0.0")}
	for _, x := range ms {
		if err := m.extend(x); err != nil {
			t.Fatal(err)
		}
	}
	got := readPCR(t, tpm, bootrecord.MeasurePCR)
	want, err := bootrecord.ReplayPCR(m.log, bootrecord.MeasurePCR)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("PCR 15 = %x, replayed log = %x", got, want)
	}
	exp, _ := bootrecord.ExpectedPCR15(ms[0].Data, "2.0.0")
	if hex.EncodeToString(got) != exp {
		t.Errorf("PCR 15 = %x, bootrecord.ExpectedPCR15 = %s", got, exp)
	}
	// PCR 24 does not exist: the TPM's error comes back as one.
	if err := extendPCR(tpm, 24, make([]byte, 32)); err == nil || !strings.Contains(err.Error(), "response code") {
		t.Errorf("extending PCR 24: %v, want a TPM response code", err)
	}
}

// startSwtpm starts a real TPM (swtpm).
func startSwtpm(t *testing.T) io.ReadWriteCloser {
	conn, _ := testutil.Swtpm(t, t.TempDir(), false)
	return conn
}

// readPCR sends TPM2_PCR_Read for one sha256 PCR (test-only encoding).
func readPCR(t *testing.T, rw io.ReadWriter, pcr int) []byte {
	t.Helper()
	var b bytes.Buffer
	be := func(v any) { binary.Write(&b, binary.BigEndian, v) }
	be(uint16(0x8001))
	be(uint32(0))
	be(uint32(0x17e))
	be(uint32(1))
	be(uint16(tpmAlgSHA256))
	be(uint8(3))
	sel := [3]byte{}
	sel[pcr/8] = 1 << (pcr % 8)
	b.Write(sel[:])
	cmd := b.Bytes()
	binary.BigEndian.PutUint32(cmd[2:], uint32(len(cmd)))
	if _, err := rw.Write(cmd); err != nil {
		t.Fatal(err)
	}
	resp := make([]byte, 4096)
	n, err := rw.Read(resp)
	if err != nil {
		t.Fatal(err)
	}
	resp = resp[:n]
	if rc := binary.BigEndian.Uint32(resp[6:]); rc != 0 {
		t.Fatalf("TPM2_PCR_Read: response code %#x", rc)
	}
	// header 10, update counter 4, selection 4+2+1+3, digest count 4, size 2
	off := 10 + 4 + 10 + 4
	size := int(binary.BigEndian.Uint16(resp[off:]))
	return resp[off+2 : off+2+size]
}
