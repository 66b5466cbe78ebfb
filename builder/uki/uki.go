// Package uki makes and signs the boot chain's EFI binaries for Secure
// Boot: a Unified Kernel Image (systemd's EFI stub with the kernel, the
// initrd, the kernel command line and os-release as PE sections, which the
// stub uses instead of anything the boot loader passes) and Authenticode
// signatures with the owner's db key.
//
// Assemble uses binutils' objcopy the way systemd's documentation does for
// systemd 252 (Debian 12 has no ukify); Sign uses sbsigntool's sbsign.
// Both run as child processes on host files; neither holds more than a PE
// header in memory.
package uki

import (
	"context"
	"debug/pe"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Parts are the host files an image is made of.
type Parts struct {
	Stub      string // systemd-boot-efi's linuxx64.efi.stub
	Linux     string // the kernel (bzImage)
	Initrd    string
	Cmdline   string // file holding the kernel command line
	OSRelease string // file holding os-release
}

// sectionAlign is where each added section starts (the page size).
const sectionAlign = 4096

// Assemble writes the UKI made of p to out. Sections go after the stub's
// own, each page-aligned, in the order .osrel, .cmdline, .initrd, .linux.
func Assemble(ctx context.Context, out string, p Parts) error {
	f, err := pe.Open(p.Stub)
	if err != nil {
		return fmt.Errorf("uki: reading the EFI stub %s: %w", p.Stub, err)
	}
	var base uint64
	switch oh := f.OptionalHeader.(type) {
	case *pe.OptionalHeader64:
		base = oh.ImageBase
	case *pe.OptionalHeader32:
		base = uint64(oh.ImageBase)
	default:
		f.Close()
		return fmt.Errorf("uki: the EFI stub %s has no optional header", p.Stub)
	}
	var end uint64
	for _, s := range f.Sections {
		end = max(end, uint64(s.VirtualAddress)+uint64(s.VirtualSize))
	}
	f.Close()
	offset := base + end
	args := []string{}
	for _, s := range []struct{ name, file string }{
		{".osrel", p.OSRelease}, {".cmdline", p.Cmdline}, {".initrd", p.Initrd}, {".linux", p.Linux},
	} {
		fi, err := os.Stat(s.file)
		if err != nil {
			return fmt.Errorf("uki: section %s: %w", s.name, err)
		}
		offset = (offset + sectionAlign - 1) &^ (sectionAlign - 1)
		args = append(args, "--add-section", s.name+"="+s.file, "--change-section-vma", fmt.Sprintf("%s=%#x", s.name, offset))
		offset += uint64(fi.Size())
	}
	args = append(args, p.Stub, out)
	return run(ctx, "objcopy", "binutils", args...)
}

// Sign writes in, signed with the PEM key and certificate, to out
// (Authenticode, as UEFI Secure Boot checks it against db).
func Sign(ctx context.Context, key, cert, in, out string) error {
	return run(ctx, "sbsign", "sbsigntool", "--key", key, "--cert", cert, "--output", out, in)
}

// Verify checks that the EFI binary at path carries a valid signature by
// cert (sbverify).
func Verify(ctx context.Context, cert, path string) error {
	return run(ctx, "sbverify", "sbsigntool", "--cert", cert, path)
}

// ErrTool: a tool Assemble, Sign or Verify runs is not installed.
var ErrTool = errors.New("tool not installed")

func run(ctx context.Context, tool, pkg string, args ...string) error {
	p, err := exec.LookPath(tool)
	if err != nil {
		return fmt.Errorf("%s not found (apt-get install %s): %w", tool, pkg, ErrTool)
	}
	out, err := exec.CommandContext(ctx, p, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", tool, err, oneLine(string(out)))
	}
	return nil
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
