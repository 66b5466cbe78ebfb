package authenticode

import (
	"bytes"
	"crypto/sha256"
	"debug/pe"
	"encoding/binary"
	"sort"
)

// referenceDigest is a second, independent Authenticode sha256 for the
// tests: debug/pe parses the image, and the digest is the spec's list of
// byte ranges of the whole file in memory (headers minus CheckSum and the
// certificate table entry, sections in file order, then the rest minus the
// certificate table). ok is false when debug/pe refuses the image or its
// ranges do not lie inside the file; capped says the image is valid but
// bigger than SHA256 accepts (SizeOfHeaders over maxHeaders).
func referenceDigest(b []byte) (sum []byte, ok, capped bool) {
	if len(b) < 64 || b[0] != 'M' || b[1] != 'Z' {
		return nil, false, false
	}
	f, err := pe.NewFile(bytes.NewReader(b))
	if err != nil {
		return nil, false, false
	}
	optStart := int64(binary.LittleEndian.Uint32(b[0x3c:])) + 4 + 20
	var soh, ndirs uint32
	var dirStart int64
	var dirs [16]pe.DataDirectory
	switch oh := f.OptionalHeader.(type) {
	case *pe.OptionalHeader32:
		soh, ndirs, dirStart, dirs = oh.SizeOfHeaders, oh.NumberOfRvaAndSizes, optStart+96, oh.DataDirectory
	case *pe.OptionalHeader64:
		soh, ndirs, dirStart, dirs = oh.SizeOfHeaders, oh.NumberOfRvaAndSizes, optStart+112, oh.DataDirectory
	default:
		return nil, false, false
	}
	size := int64(len(b))
	optEnd := optStart + int64(f.SizeOfOptionalHeader)
	if int64(soh) < optEnd+40*int64(f.NumberOfSections) || int64(soh) > size {
		return nil, false, false
	}
	type span struct{ from, to int64 }
	var spans []span
	checksum := optStart + 64
	if ndirs > 4 && dirStart+5*8 <= optEnd {
		certEntry := dirStart + 4*8
		spans = append(spans, span{0, checksum}, span{checksum + 4, certEntry}, span{certEntry + 8, int64(soh)})
	} else {
		ndirs = 0 // no certificate table entry
		spans = append(spans, span{0, checksum}, span{checksum + 4, int64(soh)})
	}
	var secs []span
	for _, s := range f.Sections {
		if s.Size == 0 {
			continue
		}
		if int64(s.Offset)+int64(s.Size) > size {
			return nil, false, false
		}
		secs = append(secs, span{int64(s.Offset), int64(s.Offset) + int64(s.Size)})
	}
	sort.SliceStable(secs, func(i, j int) bool { return secs[i].from < secs[j].from })
	spans = append(spans, secs...)
	done := int64(soh)
	for _, s := range secs {
		done += s.to - s.from
	}
	if done < size {
		end := size
		if ndirs > 4 && dirs[4].Size > 0 {
			cert := dirs[4]
			if int64(cert.VirtualAddress) < done || int64(cert.VirtualAddress)+int64(cert.Size) > size {
				return nil, false, false
			}
			end -= int64(cert.Size)
		}
		if end > done {
			spans = append(spans, span{done, end})
		}
	}
	h := sha256.New()
	for _, s := range spans {
		h.Write(b[s.from:s.to])
	}
	return h.Sum(nil), true, soh > maxHeaders
}

// testPE is a small valid PE32+ image: two sections, trailing data and a
// certificate table (when cert), the fuzzer's starting point.
func testPE(cert bool) []byte {
	b := make([]byte, 0x540)
	copy(b, "MZ")
	binary.LittleEndian.PutUint32(b[0x3c:], 0x40)
	copy(b[0x40:], "PE\x00\x00")
	coff := b[0x44:]
	binary.LittleEndian.PutUint16(coff[0:], 0x8664) // Machine
	binary.LittleEndian.PutUint16(coff[2:], 2)      // NumberOfSections
	binary.LittleEndian.PutUint16(coff[16:], 240)   // SizeOfOptionalHeader
	binary.LittleEndian.PutUint16(coff[18:], 0x22)  // Characteristics
	opt := b[0x58:]
	binary.LittleEndian.PutUint16(opt[0:], 0x20b)   // PE32+
	binary.LittleEndian.PutUint32(opt[60:], 0x200)  // SizeOfHeaders
	binary.LittleEndian.PutUint32(opt[64:], 0x1234) // CheckSum (not hashed)
	binary.LittleEndian.PutUint32(opt[108:], 16)    // NumberOfRvaAndSizes
	sec := b[0x58+240:]
	for i, s := range []struct {
		name      string
		raw, file uint32
	}{{".text", 0x200, 0x200}, {".data", 0x100, 0x400}} {
		h := sec[i*40:]
		copy(h, s.name)
		binary.LittleEndian.PutUint32(h[8:], s.raw)                 // VirtualSize
		binary.LittleEndian.PutUint32(h[12:], 0x1000*(1+uint32(i))) // VirtualAddress
		binary.LittleEndian.PutUint32(h[16:], s.raw)                // SizeOfRawData
		binary.LittleEndian.PutUint32(h[20:], s.file)               // PointerToRawData
	}
	for i := 0x200; i < len(b); i++ {
		b[i] = byte(i * 7)
	}
	if cert {
		binary.LittleEndian.PutUint32(opt[112+32:], uint32(len(b))) // certificate table
		binary.LittleEndian.PutUint32(opt[112+36:], 0x20)
		b = append(b, bytes.Repeat([]byte{0xce}, 0x20)...)
	}
	return b
}
