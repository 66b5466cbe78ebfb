package earlyinit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

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
	got := mustReadPCR(t, tpm)
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

// mustReadPCR reads PCR 15.
func mustReadPCR(t *testing.T, rw io.ReadWriter) []byte {
	t.Helper()
	v, err := readPCR(rw, bootrecord.MeasurePCR)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// fault is what faultyTPM does to a command.
type fault int

const (
	pass      fault = iota
	lost            // reaches the TPM, the response is lost: read(2) fails with ETIME
	notSent         // write(2) fails with ETIME: it never reaches the TPM
	sentTwice       // reaches the TPM twice, then read(2) fails with ETIME
)

// faultyTPM stands between the measurer and a real TPM (swtpm) where the
// kernel's driver would: the seam we own, since a starved TCG machine's
// driver timeout cannot be produced on demand in a host test. It applies
// extends[i] to the i-th TPM2_PCR_Extend and reads[i] to the i-th
// TPM2_PCR_Read (pass beyond the lists). A lost response fails the read
// with ETIME, as a VM whose swtpm was stopped showed: "tpm tpm0: Operation
// Timed out", then "reading the response: read /dev/tpmrm0: timer expired"
// (docs/attestation.md).
type faultyTPM struct {
	t              *testing.T
	tpm            io.ReadWriter
	extends, reads []fault
	nExtend, nRead int
	failRead       bool
}

func (f *faultyTPM) Write(cmd []byte) (int, error) {
	do := pass
	switch binary.BigEndian.Uint32(cmd[6:10]) {
	case tpmCCPCRExtend:
		if f.nExtend < len(f.extends) {
			do = f.extends[f.nExtend]
		}
		f.nExtend++
	case 0x17e: // TPM2_PCR_Read
		if f.nRead < len(f.reads) {
			do = f.reads[f.nRead]
		}
		f.nRead++
	}
	switch do {
	case notSent:
		return 0, &os.PathError{Op: "write", Path: "/dev/tpmrm0", Err: syscall.ETIME}
	case lost, sentTwice:
		for range map[fault]int{lost: 1, sentTwice: 2}[do] {
			if _, err := f.tpm.Write(cmd); err != nil {
				return 0, err
			}
			f.discardResponse()
		}
		f.failRead = true
		return len(cmd), nil
	}
	return f.tpm.Write(cmd)
}

func (f *faultyTPM) Read(p []byte) (int, error) {
	if f.failRead {
		f.failRead = false
		return 0, &os.PathError{Op: "read", Path: "/dev/tpmrm0", Err: syscall.ETIME}
	}
	return f.tpm.Read(p)
}

func (f *faultyTPM) Close() error { return nil }

// discardResponse reads one whole response from the TPM and checks it
// succeeded (the command took effect).
func (f *faultyTPM) discardResponse() {
	head := make([]byte, tpmResponseHead)
	if _, err := io.ReadFull(f.tpm, head); err != nil {
		f.t.Fatal(err)
	}
	rest := make([]byte, binary.BigEndian.Uint32(head[2:])-tpmResponseHead)
	if _, err := io.ReadFull(f.tpm, rest); err != nil {
		f.t.Fatal(err)
	}
	if rc := binary.BigEndian.Uint32(head[6:]); rc != 0 {
		f.t.Fatalf("the TPM refused the command behind a fault: response code %#x", rc)
	}
}

// TestExtendErrors extends PCR 15 of a real TPM (swtpm) through a driver
// that fails the way a starved machine's does, and checks that the log
// plumb-init keeps replays to PCR 15 whatever happened: an extend the TPM
// took although the driver said it failed is logged (without the read-back
// it was not, and the log missed what PCR 15 held); one that never reached
// the TPM is sent again; one that reached it twice is logged twice; and
// when PCR 15 cannot be read back, the log says so and nothing more is
// extended.
func TestExtendErrors(t *testing.T) {
	rootfs := bootrecord.RootfsMeasurement(strings.Repeat("0123456789abcdef", 4))
	rel := bootrecord.ReleaseMeasurement("2.0.0")
	failed := []fault{lost, lost, lost, lost, lost}
	for _, tc := range []struct {
		name           string
		extends, reads []fault
		wantErr        string // of the rootfs extend; "" none
		wantLog        []string
		replays        bool // the log replays to PCR 15
	}{
		{name: "taken despite the error", extends: []fault{lost}, wantLog: []string{bootrecord.EventRootfs, bootrecord.EventRelease}, replays: true},
		{name: "not sent then sent", extends: []fault{notSent}, wantLog: []string{bootrecord.EventRootfs, bootrecord.EventRelease}, replays: true},
		{name: "read-back fails then works", extends: []fault{lost}, reads: []fault{lost, notSent}, wantLog: []string{bootrecord.EventRootfs, bootrecord.EventRelease}, replays: true},
		{name: "never sent", extends: []fault{notSent, notSent, notSent}, wantErr: "3 tries, PCR 15 unchanged",
			wantLog: []string{bootrecord.EventRelease}, replays: true},
		{name: "taken twice", extends: []fault{sentTwice}, wantLog: []string{bootrecord.EventRootfs, bootrecord.EventRootfs, bootrecord.EventRelease}, replays: true},
		{name: "unknown", extends: []fault{lost}, reads: failed, wantErr: "could not be read back",
			wantLog: []string{bootrecord.EventUnknown}, replays: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tpm := startSwtpm(t)
			m := &measurer{tpm: &faultyTPM{t: t, tpm: tpm, extends: tc.extends, reads: tc.reads}, pause: time.Millisecond, warnings: slog.New(slog.NewTextHandler(testLog{t}, nil))}
			err := m.extend(rootfs)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("extend(rootfs) = %v, want error %q", err, tc.wantErr)
			}
			relErr := m.extend(rel)
			if tc.name == "unknown" {
				if relErr == nil || !strings.Contains(relErr.Error(), "unknown") {
					t.Errorf("extend(release) after an unknown state = %v, want a refusal", relErr)
				}
			} else if relErr != nil {
				t.Errorf("extend(release) = %v", relErr)
			}
			var types []string
			for _, x := range m.log {
				types = append(types, x.Type)
			}
			if strings.Join(types, ",") != strings.Join(tc.wantLog, ",") {
				t.Errorf("log = %v, want %v", types, tc.wantLog)
			}
			got := mustReadPCR(t, tpm)
			replay, err := bootrecord.ReplayPCR(m.log, bootrecord.MeasurePCR)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(got, replay) != tc.replays {
				t.Errorf("PCR 15 = %x, log replay = %x: equal %v, want %v", got, replay, !tc.replays, tc.replays)
			}
			if tc.name == "unknown" {
				u := m.log[0]
				if u.SHA256 != rootfs.SHA256 || !strings.Contains(u.Data, "plumb.rootfs") || !strings.Contains(u.Data, "timer expired") {
					t.Errorf("unknown entry = %+v, want the rootfs digest and why", u)
				}
			}
			if tc.name == "taken despite the error" {
				exp, _ := bootrecord.ExpectedPCR15(rootfs.Data, "2.0.0")
				if hex.EncodeToString(got) != exp {
					t.Errorf("PCR 15 = %x, want the release's %s (each measurement extended once)", got, exp)
				}
			}
		})
	}
}

// testLog writes log lines to the test's log.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
