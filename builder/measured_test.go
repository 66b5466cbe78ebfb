package builder

import (
	"bytes"
	"crypto/sha256"
	"os"
	"testing"
	"unicode/utf16"

	"github.com/plumb-os/plumb/format/bootentry"
)

// TestLoadOptionsMeasured: the command line the builder publishes for slot
// a of the demo recipe is what systemd-boot measured into PCR 12 on a real
// VM boot (authenticode/testdata/ovmf-eventlog.bin, the UEFI event log of
// the demo image): sha256 of its UTF-16LE bytes with the terminating NUL.
func TestLoadOptionsMeasured(t *testing.T) {
	e := bootentry.Entry{Version: "1.0.0", Slot: "a", PartUUID: "7c7f0a17-b18f-84ab-88c1-2c29a0c5c924", Cmdline: "console=ttyS0 panic=5 loglevel=4"}
	want := `initrd=\plumb\a\initrd.img root=PARTUUID=7c7f0a17-b18f-84ab-88c1-2c29a0c5c924 ro plumb.slot=a console=ttyS0 panic=5 loglevel=4`
	if got := e.LoadOptions(); got != want {
		t.Fatalf("LoadOptions() = %q, want %q", got, want)
	}
	var u []byte
	for _, c := range utf16.Encode([]rune(e.LoadOptions() + "\x00")) {
		u = append(u, byte(c), byte(c>>8))
	}
	sum := sha256.Sum256(u)
	log, err := os.ReadFile("authenticode/testdata/ovmf-eventlog.bin")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(log, sum[:]) || !bytes.Contains(log, u) {
		t.Errorf("the load options' UTF-16 bytes and their sha256 %x are not in the VM's event log", sum)
	}
}
