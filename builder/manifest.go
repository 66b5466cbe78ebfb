package builder

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/plumb-os/plumb/builder/authenticode"
	"github.com/plumb-os/plumb/format/bootentry"
	"github.com/plumb-os/plumb/format/bootrecord"
	"github.com/plumb-os/plumb/format/disklayout"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/format/verity"
	"github.com/plumb-os/plumb/internal/atomicfile"
	"github.com/plumb-os/plumb/internal/fstree"
)

// Manifest describes one build's outputs. It is written as manifest.json
// beside them and holds nothing that changes between two builds of the same
// recipe (no build time, no host names).
type Manifest struct {
	Name          string      `json:"name"`
	Version       string      `json:"version"`
	Hardware      string      `json:"hardware"`
	Channel       string      `json:"channel"`
	Epoch         int64       `json:"epoch"`
	KernelRelease string      `json:"kernel_release"`
	Cmdline       string      `json:"cmdline"` // the slot A entry's full options
	Artifacts     []Artifact  `json:"artifacts"`
	Kernel        Digest      `json:"kernel"`
	Initrd        Digest      `json:"initrd"`
	Partitions    []Partition `json:"partitions"`
	// Measured are the reference values for attestation: what booting
	// this release measures into the TPM (release.Measured).
	Measured *release.Measured `json:"measured,omitempty"`
	// Verity describes the root image's dm-verity hash tree (builds with
	// boot.verity; format/verity).
	Verity *verity.Facts `json:"verity,omitempty"`
}

// Artifact is one output file.
type Artifact struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Digest is a sha256 and size.
type Digest struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Partition is one GPT entry of the disk image.
type Partition struct {
	Index    int    `json:"index"`
	Name     string `json:"name"`
	Type     string `json:"type_guid"`
	PartUUID string `json:"partuuid"`
	Start    int64  `json:"start"`
	Size     int64  `json:"size"`
}

// ReadManifest reads a build's manifest.json.
func ReadManifest(path string) (*Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &m, nil
}

func (b *build) manifest() (*Manifest, error) {
	m := &Manifest{
		Name: b.r.Name, Version: b.r.Version, Hardware: b.r.Hardware, Channel: b.r.Channel,
		Epoch: b.epoch, KernelRelease: b.kernel.release,
	}
	for _, name := range b.outputs() {
		d, err := digestFile(filepath.Join(b.work, name))
		if err != nil {
			return nil, err
		}
		m.Artifacts = append(m.Artifacts, Artifact{Name: name, Size: d.Size, SHA256: d.SHA256})
		switch name {
		case KernelFile:
			m.Kernel = d
		case InitrdFile:
			m.Initrd = d
		}
	}
	for _, p := range b.disk.partitions {
		m.Partitions = append(m.Partitions, Partition{Index: p.Index, Name: p.Name, Type: p.TypeGUID, PartUUID: p.PartUUID, Start: p.Start, Size: p.Size})
	}
	m.Cmdline = b.disk.entry.Options()
	if b.verity != nil {
		m.Verity = b.verity.Facts()
	}
	me, err := b.measured(m)
	switch {
	case errors.Is(err, authenticode.ErrNotPE):
		// Not bootable by UEFI (a test kernel): nothing to attest.
		b.log.Warn("no reference values for attestation", "err", err)
	case err != nil:
		return nil, err
	default:
		m.Measured = me
	}
	return m, nil
}

// measured computes the reference values of the build: what the firmware,
// systemd-boot, the EFI stub and plumb-init will measure when a device
// boots it (docs/attestation.md).
func (b *build) measured(m *Manifest) (*release.Measured, error) {
	boot, err := authenticodeOf(b.espBoot.Source, filepath.Join(b.work, "bootloader.efi"))
	if err != nil {
		return nil, fmt.Errorf("systemd-boot: %w", err)
	}
	kernel, err := authenticodeOf(fstree.HostFile(filepath.Join(b.work, KernelFile)), "")
	if err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	var rootfs string
	for _, a := range m.Artifacts {
		if a.Name == RootfsFile {
			rootfs = a.SHA256
		}
	}
	pcr15, err := bootrecord.ExpectedPCR15(rootfs, m.Version)
	if err != nil {
		return nil, err
	}
	me := &release.Measured{Bootloader: boot, Kernel: kernel, Initrd: m.Initrd.SHA256, PCR15: pcr15, Cmdline: map[string]string{}}
	for _, p := range b.disk.layout.Partitions() {
		if slot := disklayout.SlotOf(p.Name); slot != "" {
			me.Cmdline[string(slot)] = bootentry.Entry{Version: m.Version, Slot: slot, PartUUID: p.PartUUID, Verity: b.verityCmdline(), Cmdline: b.kernelCmdline()}.LoadOptions()
		}
	}
	if b.sb != nil {
		// A UKI boot: the firmware measures the slot's UKI where it would
		// measure the kernel, and systemd's stub its .cmdline section.
		me.UKI = map[string]string{}
		for slot, path := range b.sb.ukis {
			if me.UKI[slot], err = authenticodeOf(fstree.HostFile(path), ""); err != nil {
				return nil, fmt.Errorf("UKI of slot %s: %w", slot, err)
			}
			me.Cmdline[slot] = b.sb.cmdlines[slot]
		}
		if me.SecureBoot, err = b.sb.secureBootState(); err != nil {
			return nil, err
		}
	}
	return me, nil
}

// authenticodeOf returns the PE/Authenticode sha256 (hex) of src; a source
// that is not a host file is first copied to spill.
func authenticodeOf(src fstree.Source, spill string) (string, error) {
	path, ok := src.(fstree.HostFile)
	if !ok {
		if err := copySource(spill, src); err != nil {
			return "", err
		}
		defer os.Remove(spill)
		path = fstree.HostFile(spill)
	}
	f, err := os.Open(string(path))
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	sum, err := authenticode.SHA256(f, fi.Size())
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(sum), nil
}

// digestFile streams a file through sha256.
func digestFile(path string) (Digest, error) {
	f, err := os.Open(path)
	if err != nil {
		return Digest{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return Digest{}, fmt.Errorf("hashing %s: %w", path, err)
	}
	return Digest{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

func writeManifest(path string, m *Manifest) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(data, '\n'), 0o644)
}
