package builder

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"

	"github.com/plumb-os/plumb/builder/uki"
	"github.com/plumb-os/plumb/format/bootentry"
	"github.com/plumb-os/plumb/format/disklayout"
	"github.com/plumb-os/plumb/format/release"
	"github.com/plumb-os/plumb/internal/fstree"
	"github.com/plumb-os/plumb/internal/progress"
)

// stubEFI is systemd's EFI stub for UKIs, in the systemd-boot-efi package.
const stubEFI = "usr/lib/systemd/boot/efi/linuxx64.efi.stub"

// UKIFile is the signed Unified Kernel Image of a slot ("uki-a.efi"), an
// output of builds with boot.secure_boot: its command line boots that
// slot's root partition through dm-verity with this release's root hash.
func UKIFile(slot string) string { return "uki-" + slot + ".efi" }

// secureBoot is what the secure boot step produced.
type secureBoot struct {
	key, cert string
	// The UKI's parts that every UKI of the build shares (host files):
	// the stub, the kernel and os-release; the installer's UKI uses them too.
	stub, linux, osrel string
	pk, kek            string            // the owner's PK and KEK certificates, or ""
	ukis               map[string]string // slot -> signed UKI in the work directory
	cmdlines           map[string]string // slot -> the UKI's .cmdline section
}

// signBootChain makes and signs, with the owner's db key, one UKI per slot
// and systemd-boot. The UKI's .cmdline is the slot's boot entry options
// (root partition, verity root hash, the recipe's command line): under
// Secure Boot the stub ignores any command line systemd-boot passes.
func (b *build) signBootChain(ctx context.Context, _ *progress.Step) error {
	key, cert := b.opts.SecureBootKey, b.opts.SecureBootCert
	if sb := b.r.Boot.SecureBoot; sb != nil && key == "" {
		key, cert = sb.Key, sb.Cert
	}
	if key == "" && b.r.Partitions.DataEncryption != "" {
		return fmt.Errorf("%w: %s: partitions.data_encryption: %q seals /data to the Secure Boot state (PCR 7): expected a Secure Boot key (boot.secure_boot, or --secure-boot-key and --secure-boot-cert)", ErrBadInput, b.r.Origin, b.r.Partitions.DataEncryption)
	}
	if key == "" {
		return nil
	}
	if b.verity == nil {
		return fmt.Errorf("%w: %s: boot.secure_boot: expected boot.verity: true with it", ErrBadInput, b.r.Origin)
	}
	if b.stub == nil {
		return fmt.Errorf("%w: package %s has no %s (the UKI stub)", ErrBadInput, b.opts.Bootloader, stubEFI)
	}
	dir := filepath.Join(b.work, "uki")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	spill := func(name string, src fstree.Source) (string, error) {
		p := filepath.Join(dir, name)
		return p, copySource(p, src)
	}
	stub, err := spill("linuxx64.efi.stub", b.stub.Source)
	if err != nil {
		return err
	}
	linux, err := spill("vmlinuz", b.kernel.image.Source)
	if err != nil {
		return err
	}
	osrel := filepath.Join(dir, "os-release")
	if err := os.WriteFile(osrel, []byte(b.osRelease()), 0o644); err != nil {
		return err
	}
	sb := &secureBoot{key: key, cert: cert, stub: stub, linux: linux, osrel: osrel, ukis: map[string]string{}, cmdlines: map[string]string{}}
	if r := b.r.Boot.SecureBoot; r != nil && b.opts.SecureBootKey == "" {
		sb.pk, sb.kek = r.PK, r.KEK
	}
	layout := disklayout.Layout{Seed: b.r.Name + "/" + b.r.Hardware, ESPSize: int64(b.r.Partitions.ESP), RootSize: int64(b.r.Partitions.Root), DataSize: int64(b.r.Partitions.Data)}
	for _, p := range layout.Partitions() {
		slot := string(disklayout.SlotOf(p.Name))
		if slot == "" {
			continue
		}
		e := bootentry.Entry{Version: b.r.Version, Slot: disklayout.Slot(slot), PartUUID: p.PartUUID, Verity: b.verityCmdline(), Cmdline: b.kernelCmdline()}
		cmdline := filepath.Join(dir, "cmdline-"+slot)
		if err := os.WriteFile(cmdline, []byte(e.Options()), 0o644); err != nil {
			return err
		}
		unsigned := filepath.Join(dir, "uki-"+slot+".unsigned.efi")
		if err := uki.Assemble(ctx, unsigned, uki.Parts{Stub: stub, Linux: linux, Initrd: b.initrdPath, Cmdline: cmdline, OSRelease: osrel}); err != nil {
			return err
		}
		out := filepath.Join(b.work, UKIFile(slot))
		if err := uki.Sign(ctx, key, cert, unsigned, out); err != nil {
			return fmt.Errorf("%w: signing the UKI of slot %s: %w", ErrBadInput, slot, err)
		}
		sb.ukis[slot] = out
		sb.cmdlines[slot] = e.Options()
	}
	boot, err := spill("systemd-bootx64.efi", b.espBoot.Source)
	if err != nil {
		return err
	}
	signed := filepath.Join(b.work, "systemd-bootx64.signed.efi")
	if err := uki.Sign(ctx, key, cert, boot, signed); err != nil {
		return fmt.Errorf("%w: signing systemd-boot: %w", ErrBadInput, err)
	}
	fi, err := os.Stat(signed)
	if err != nil {
		return err
	}
	b.espBoot = &fstree.Node{Mode: 0o644, Size: fi.Size(), Source: fstree.HostFile(signed)}
	b.sb = sb
	b.log.Debug("boot chain signed", "ukis", len(sb.ukis), "cert", cert)
	return nil
}

// signInstallerUKI makes and signs, with the owner's db key, the
// installer's UKI: the same stub, kernel and os-release as the slots'
// UKIs, the installer initramfs, and the installer's command line (under
// Secure Boot the stub ignores any other).
func (b *build) signInstallerUKI(ctx context.Context, initrd, cmdline string) (string, error) {
	sb := b.sb
	dir := filepath.Join(b.work, "uki")
	cl := filepath.Join(dir, "cmdline-installer")
	if err := os.WriteFile(cl, []byte(cmdline), 0o644); err != nil {
		return "", err
	}
	unsigned := filepath.Join(dir, "installer.unsigned.efi")
	if err := uki.Assemble(ctx, unsigned, uki.Parts{Stub: sb.stub, Linux: sb.linux, Initrd: initrd, Cmdline: cl, OSRelease: sb.osrel}); err != nil {
		return "", fmt.Errorf("installer UKI: %w", err)
	}
	out := filepath.Join(b.work, InstallerUKIFile)
	if err := uki.Sign(ctx, sb.key, sb.cert, unsigned, out); err != nil {
		return "", fmt.Errorf("%w: signing the installer UKI: %w", ErrBadInput, err)
	}
	return out, nil
}

// InstallerUKIFile is the installer's signed UKI (builds with
// boot.secure_boot): the installer's kernel, initramfs and command line,
// which installer.img boots through signed systemd-boot.
const InstallerUKIFile = "installer.efi"

// osRelease is the UKI's .osrel section.
func (b *build) osRelease() string {
	return fmt.Sprintf("NAME=Plumb\nID=plumb\nPRETTY_NAME=\"Plumb %s %s\"\nVERSION_ID=%s\nIMAGE_ID=%s\nIMAGE_VERSION=%s\n",
		b.r.Name, b.r.Version, b.r.Version, b.r.Name, b.r.Version)
}

// secureBootState is the Secure Boot state PCR 7 must show for this
// build: its signing certificate in db and, when the recipe names them,
// the owner's PK and KEK.
func (sb *secureBoot) secureBootState() (*release.SecureBootState, error) {
	st := &release.SecureBootState{}
	db, err := certOf(sb.cert)
	if err != nil {
		return nil, err
	}
	st.DB = *db
	if sb.pk != "" {
		if st.PK, err = certOf(sb.pk); err != nil {
			return nil, err
		}
	}
	if sb.kek != "" {
		if st.KEK, err = certOf(sb.kek); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// certOf reads a PEM (or DER) certificate and identifies it.
func certOf(path string) (*release.Cert, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	der := data
	if blk, _ := pem.Decode(data); blk != nil {
		der = blk.Bytes
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: expected a PEM or DER X.509 certificate: %v", ErrBadInput, path, err)
	}
	sum := sha256.Sum256(c.Raw)
	return &release.Cert{SHA256: hex.EncodeToString(sum[:]), Subject: c.Subject.String()}, nil
}
