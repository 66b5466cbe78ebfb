package datacrypt

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/internal/testutil"
)

// TestFormatOpensWithCryptsetup: the header Plumb writes is one real
// cryptsetup accepts: luksDump shows the layout and the token, and the
// recovery key (keyslot 0) gives back the volume key (--dump-volume-key).
func TestFormatOpensWithCryptsetup(t *testing.T) {
	cs := testutil.RequireTool(t, "cryptsetup", "cryptsetup-bin")
	dir := t.TempDir()
	img := filepath.Join(dir, "data.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(8 << 20); err != nil {
		t.Fatal(err)
	}
	vk := make([]byte, keySize)
	rand.Read(vk)
	rec := NewRecoveryKey()
	tok := map[string]any{"type": TokenType, "keyslots": []string{}, "x": "y"}
	if err := format(f, vk, rec, tok); err != nil {
		t.Fatal(err)
	}
	f.Close()

	out, err := exec.Command(cs, "luksDump", img).CombinedOutput()
	if err != nil {
		t.Fatalf("cryptsetup luksDump: %v\n%s", err, out)
	}
	for _, want := range []string{"Version:       \t2", "offset: 1048576 [bytes]", "cipher: aes-xts-plain64", "0: luks2", TokenType} {
		if !strings.Contains(string(out), want) {
			t.Errorf("luksDump lacks %q:\n%s", want, out)
		}
	}
	keyFile := filepath.Join(dir, "recovery")
	os.WriteFile(keyFile, []byte(rec), 0o600)
	out, err = exec.Command(cs, "luksDump", "--dump-volume-key", "--batch-mode", "--key-file", keyFile, img).CombinedOutput()
	if err != nil {
		t.Fatalf("cryptsetup luksDump --dump-volume-key with the recovery key: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`(?s)MK dump:\s*(.*?)\n\S`).FindSubmatch(append(out, "\nX"...))
	if m == nil {
		t.Fatalf("no MK dump in:\n%s", out)
	}
	got, _ := hex.DecodeString(strings.Join(strings.Fields(string(m[1])), ""))
	if !bytes.Equal(got, vk) {
		t.Errorf("cryptsetup's volume key %x, want %x", got, vk)
	}
	os.WriteFile(keyFile, []byte(NewRecoveryKey()), 0o600)
	if out, err := exec.Command(cs, "luksDump", "--dump-volume-key", "--batch-mode", "--key-file", keyFile, img).CombinedOutput(); err == nil {
		t.Errorf("cryptsetup accepted another recovery key:\n%s", out)
	}

	f, _ = os.Open(img)
	defer f.Close()
	h, err := ReadHeader(f)
	if err != nil {
		t.Fatal(err)
	}
	if h.Offset != 1<<20 || h.Token == nil {
		t.Errorf("header: offset %d token %s", h.Offset, h.Token)
	}
	if err := h.CheckKey(vk); err != nil {
		t.Error(err)
	}
	if err := h.CheckKey(make([]byte, keySize)); err == nil {
		t.Error("CheckKey accepted a zero key")
	}
}
