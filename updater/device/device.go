// Package device reports the facts of the running device that the agent
// needs before anything else: which release and slot it booted, how it got
// there (the early init's boot record), and whether it has a TPM.
//
// Probe only reads; it never fails for a missing fact, it leaves it empty,
// so `plumbd status` works on a half-broken system too.
package device

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"

	"github.com/plumb-os/plumb/format/bootrecord"
	"github.com/plumb-os/plumb/format/release"
)

// TPM tells whether the kernel exposes a TPM.
type TPM struct {
	Present bool   `json:"present"`
	Device  string `json:"device,omitempty"`
	Version string `json:"version,omitempty"` // "2" for a TPM 2.0
}

// Facts is what Probe found.
type Facts struct {
	Release release.ImageInfo    `json:"release"`
	Slot    string               `json:"slot"`
	Boot    *bootrecord.BootInfo `json:"boot,omitempty"`
	TPM     TPM                  `json:"tpm"`
}

// Paths of the facts, relative to the root Probe is given.
const (
	ReleaseFile = release.ImageInfoPath
	BootFile    = "run/plumb/boot.json" // bootrecord.BootInfoPath, relative
)

// Probe reads the facts below root ("/" on a device; a temp dir in tests).
func Probe(root string) Facts {
	var f Facts
	readJSON(filepath.Join(root, ReleaseFile), &f.Release)
	if b, err := bootrecord.ReadBootInfo(filepath.Join(root, BootFile)); err == nil {
		f.Boot = &b
		f.Slot = b.Slot
	}
	if f.Slot == "" {
		f.Slot = slotFromCmdline(filepath.Join(root, "proc/cmdline"))
	}
	f.TPM = probeTPM(root)
	return f
}

func readJSON(path string, v any) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	return json.Unmarshal(data, v) == nil
}

// slotFromCmdline reads plumb.slot= from the kernel command line.
func slotFromCmdline(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, field := range strings.Fields(string(data)) {
		if v, ok := strings.CutPrefix(field, "plumb.slot="); ok {
			return v
		}
	}
	return ""
}

func probeTPM(root string) TPM {
	var t TPM
	for _, dev := range []string{"dev/tpmrm0", "dev/tpm0"} {
		if _, err := os.Stat(filepath.Join(root, dev)); err == nil {
			t.Present, t.Device = true, "/"+dev
			break
		}
	}
	if v, err := os.ReadFile(filepath.Join(root, "sys/class/tpm/tpm0/tpm_version_major")); err == nil {
		t.Present = true
		t.Version = strings.TrimSpace(string(v))
	}
	return t
}
