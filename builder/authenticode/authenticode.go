// Package authenticode computes the Authenticode digest of a PE/COFF image:
// the hash UEFI firmware measures into PCR 4 when it starts an EFI
// application (systemd-boot, a kernel with an EFI stub) and logs as an
// EV_EFI_BOOT_SERVICES_APPLICATION event.
//
// The digest follows the PE/COFF specification's "Calculating the PE Image
// Hash" as EDK2 implements it (DxeTpm2MeasureBootLib, TcgMeasurePeImage):
// the headers up to SizeOfHeaders without the CheckSum field and the
// certificate table's data directory entry, then every section with raw
// data in file order, then any bytes after the last section except the
// attribute certificate table. A signed and an unsigned copy of the same
// image have the same digest.
package authenticode

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
)

// maxHeaders bounds SizeOfHeaders: real images have a few KiB.
const maxHeaders = 1 << 20

// ErrNotPE is returned for input that is not a PE/COFF image.
var ErrNotPE = errors.New("not a PE/COFF image")

// SHA256 returns the Authenticode sha256 of the PE image in r (size bytes).
// It reads the headers into memory (at most 1 MiB) and streams the rest.
func SHA256(r io.ReaderAt, size int64) ([]byte, error) {
	h := sha256.New()
	if err := Hash(h, r, size); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// Hash writes the bytes the Authenticode digest covers to h.
func Hash(h hash.Hash, r io.ReaderAt, size int64) error {
	var dos [64]byte
	if _, err := r.ReadAt(dos[:], 0); err != nil {
		return fmt.Errorf("%w: reading the DOS header: %v", ErrNotPE, err)
	}
	if dos[0] != 'M' || dos[1] != 'Z' {
		return fmt.Errorf("%w: expected \"MZ\" at offset 0, got %q", ErrNotPE, dos[:2])
	}
	peOff := int64(binary.LittleEndian.Uint32(dos[0x3c:]))
	var fh [24]byte // signature + COFF file header
	if peOff <= 0 || peOff > size-int64(len(fh)) {
		return fmt.Errorf("%w: PE header offset %d outside the %d-byte file", ErrNotPE, peOff, size)
	}
	if _, err := r.ReadAt(fh[:], peOff); err != nil {
		return fmt.Errorf("%w: reading the COFF header: %v", ErrNotPE, err)
	}
	if string(fh[:4]) != "PE\x00\x00" {
		return fmt.Errorf("%w: expected \"PE\\0\\0\" at offset %d, got %q", ErrNotPE, peOff, fh[:4])
	}
	nsect := int64(binary.LittleEndian.Uint16(fh[6:]))
	optSize := int64(binary.LittleEndian.Uint16(fh[20:]))
	optOff := peOff + 24
	if optSize < 96 || optOff+optSize > size {
		return fmt.Errorf("%w: optional header of %d bytes does not fit", ErrNotPE, optSize)
	}
	opt := make([]byte, optSize)
	if _, err := r.ReadAt(opt, optOff); err != nil {
		return fmt.Errorf("%w: reading the optional header: %v", ErrNotPE, err)
	}
	var ddOff int64 // data directories, relative to the optional header
	switch magic := binary.LittleEndian.Uint16(opt); magic {
	case 0x10b: // PE32
		ddOff = 96
	case 0x20b: // PE32+
		ddOff = 112
	default:
		return fmt.Errorf("%w: optional header magic %#x", ErrNotPE, magic)
	}
	if optSize < ddOff {
		return fmt.Errorf("%w: optional header of %d bytes is shorter than its fixed part (%d)", ErrNotPE, optSize, ddOff)
	}
	const checksumOff = 64
	numDirs := int64(binary.LittleEndian.Uint32(opt[ddOff-4:]))
	certEntry := ddOff + 4*8 // IMAGE_DIRECTORY_ENTRY_SECURITY
	hasCertDir := numDirs > 4 && certEntry+8 <= optSize
	var certOff, certSize int64
	if hasCertDir {
		certOff = int64(binary.LittleEndian.Uint32(opt[certEntry:]))
		certSize = int64(binary.LittleEndian.Uint32(opt[certEntry+4:]))
	}
	sizeOfHeaders := int64(binary.LittleEndian.Uint32(opt[60:]))
	if sizeOfHeaders < optOff+optSize || sizeOfHeaders > size || sizeOfHeaders > maxHeaders {
		return fmt.Errorf("%w: SizeOfHeaders %d outside %d..%d", ErrNotPE, sizeOfHeaders, optOff+optSize, min(size, maxHeaders))
	}
	hdr := make([]byte, sizeOfHeaders)
	if _, err := r.ReadAt(hdr, 0); err != nil {
		return fmt.Errorf("%w: reading the headers: %v", ErrNotPE, err)
	}

	// 1. Headers without CheckSum and the certificate table entry.
	ck := optOff + checksumOff
	h.Write(hdr[:ck])
	if hasCertDir {
		ce := optOff + certEntry
		h.Write(hdr[ck+4 : ce])
		h.Write(hdr[ce+8:])
	} else {
		h.Write(hdr[ck+4:])
	}

	// 2. Sections with raw data, by file offset.
	secOff := optOff + optSize
	if secOff+nsect*40 > sizeOfHeaders {
		return fmt.Errorf("%w: %d section headers do not fit in SizeOfHeaders %d", ErrNotPE, nsect, sizeOfHeaders)
	}
	type section struct{ off, size int64 }
	var secs []section
	for i := range nsect {
		s := hdr[secOff+i*40 : secOff+(i+1)*40]
		raw := int64(binary.LittleEndian.Uint32(s[16:]))
		ptr := int64(binary.LittleEndian.Uint32(s[20:]))
		if raw == 0 {
			continue
		}
		if ptr+raw > size {
			return fmt.Errorf("%w: section %d (%q) at %d+%d runs past the %d-byte file", ErrNotPE, i, trimName(s[:8]), ptr, raw, size)
		}
		secs = append(secs, section{ptr, raw})
	}
	slices.SortStableFunc(secs, func(a, b section) int { return int(a.off - b.off) })
	hashed := sizeOfHeaders
	for _, s := range secs {
		if _, err := io.Copy(h, io.NewSectionReader(r, s.off, s.size)); err != nil {
			return fmt.Errorf("reading section at %d: %w", s.off, err)
		}
		hashed += s.size
	}

	// 3. What follows, except the certificate table.
	if size > hashed {
		end := size
		if certSize > 0 {
			if certOff < hashed || certOff+certSize > size {
				return fmt.Errorf("%w: certificate table at %d+%d outside %d..%d", ErrNotPE, certOff, certSize, hashed, size)
			}
			end = size - certSize
		}
		if end > hashed {
			if _, err := io.Copy(h, io.NewSectionReader(r, hashed, end-hashed)); err != nil {
				return fmt.Errorf("reading trailing data: %w", err)
			}
		}
	}
	return nil
}

func trimName(b []byte) string {
	if i := slices.Index(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
