package device

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/plumb-os/plumb/format/disklayout"
)

func write(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestProbe(t *testing.T) {
	tests := []struct {
		name     string
		files    map[string]string
		wantSlot disklayout.Slot
		wantVer  string
		wantTPM  bool
	}{
		{"nothing", nil, "", "", false},
		{"boot record wins", map[string]string{
			BootFile:       `{"slot":"b","root_partuuid":"x"}`,
			"proc/cmdline": "root=PARTUUID=x plumb.slot=a",
		}, "b", "", false},
		{"cmdline fallback", map[string]string{"proc/cmdline": "console=ttyS0 plumb.slot=a ro\n"}, "a", "", false},
		{"release and tpm", map[string]string{
			ReleaseFile:                            `{"name":"demo","version":"1.2.3"}`,
			"dev/tpmrm0":                           "",
			"sys/class/tpm/tpm0/tpm_version_major": "2\n",
		}, "", "1.2.3", true},
		{"garbage files are ignored", map[string]string{ReleaseFile: "{", BootFile: "nope"}, "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for rel, c := range tt.files {
				write(t, root, rel, c)
			}
			f := Probe(root)
			if f.Slot != tt.wantSlot || f.Release.Version != tt.wantVer || f.TPM.Present != tt.wantTPM {
				t.Errorf("Probe = slot %q version %q tpm %v, want %q %q %v", f.Slot, f.Release.Version, f.TPM.Present, tt.wantSlot, tt.wantVer, tt.wantTPM)
			}
		})
	}
}
