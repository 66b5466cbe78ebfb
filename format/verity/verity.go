// Package verity owns the dm-verity hash tree of a Plumb root slot: its
// on-disk format (the kernel's verity format version 1 with sha256, 4096-byte
// data and hash blocks and a salt, as `veritysetup format` writes it), the
// parameters that describe it (Params) and their kernel command line form.
//
// The builder and the device both compute the tree with Build: the builder
// when it makes a release (the root hash goes into the release facts and the
// boot entry's command line), the device after it wrote a release into its
// inactive slot (full download, delta or installer), checking that the root
// hash it got is the one of the facts before it arms a trial boot.
// plumb-init reads Params from the command line and maps the slot through
// the device mapper's verity target.
//
// A slot holds the squashfs image from offset 0, zeros up to the next 4096
// bytes, then the hash area at HashOffset: a 512-byte veritysetup superblock
// padded to 4096 bytes, followed by the tree, top level first (see
// FORMAT.md beside this file). `veritysetup verify SLOT SLOT ROOT
// --hash-offset=HASHOFFSET` accepts it.
//
// It imports only the standard library: both sides use it.
package verity

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// BlockSize is the data and hash block size.
const BlockSize = 4096

// digestSize is sha256's; hashesPerBlock how many fit a hash block.
const (
	digestSize     = sha256.Size
	hashesPerBlock = BlockSize / digestSize
)

// SaltSize is the size of the salt Plumb uses (veritysetup's default).
const SaltSize = 32

// superblockSize is veritysetup's superblock; it takes one hash block.
const superblockSize = 512

// MaxDataBlocks caps the image a tree is built for (1 TiB of data): the
// tree's levels are kept in memory, 1/128 of the data.
const MaxDataBlocks = 1 << 28

// Params describe one slot's verity tree.
type Params struct {
	// RootHash is the sha256 of the salt and the tree's top block.
	RootHash []byte
	// Salt prefixes every hashed block.
	Salt []byte
	// DataBlocks is how many 4096-byte blocks of the slot are verified
	// (the squashfs image rounded up).
	DataBlocks uint64
	// HashOffset is the byte offset of the hash area (the superblock) in
	// the slot: DataBlocks*4096.
	HashOffset uint64
}

// ErrMismatch: a tree does not have the expected root hash.
var ErrMismatch = errors.New("verity root hash mismatch")

// DataBlocksFor returns the data blocks of an image of size bytes.
func DataBlocksFor(size int64) uint64 {
	return uint64((size + BlockSize - 1) / BlockSize)
}

// levels returns the number of hash blocks of each level, level 0 (the
// hashes of the data blocks) first; the last level has one block. One data
// block has no levels (its hash is the root hash), as in the kernel.
func levels(dataBlocks uint64) []uint64 {
	var out []uint64
	n := dataBlocks
	if n <= 1 {
		return nil
	}
	for {
		n = (n + hashesPerBlock - 1) / hashesPerBlock
		out = append(out, n)
		if n <= 1 {
			return out
		}
	}
}

// TreeBlocks returns the hash blocks of a tree over dataBlocks (without
// the superblock).
func TreeBlocks(dataBlocks uint64) uint64 {
	var t uint64
	for _, n := range levels(dataBlocks) {
		t += n
	}
	return t
}

// HashAreaSize is the size in bytes of the hash area: the superblock block
// and the tree.
func HashAreaSize(dataBlocks uint64) int64 {
	return int64(1+TreeBlocks(dataBlocks)) * BlockSize
}

// SlotSize is what a slot needs for an image of size bytes and its tree.
func SlotSize(size int64) int64 {
	b := DataBlocksFor(size)
	return int64(b)*BlockSize + HashAreaSize(b)
}

// Build computes the tree of the first size bytes of data (the last block
// padded with zeros) with salt and writes the hash area (superblock, then
// the tree) to hash from offset 0. It returns the tree's Params with
// HashOffset set to where the data ends, rounded to a block. Memory use is
// the tree's size (1/127 of the data) plus one block.
func Build(data io.ReaderAt, size int64, salt []byte, hash io.WriterAt) (*Params, error) {
	if size <= 0 {
		return nil, fmt.Errorf("verity: image size: expected a positive size, got %d", size)
	}
	if len(salt) == 0 || len(salt) > 256 {
		return nil, fmt.Errorf("verity: salt: expected 1 to 256 bytes, got %d", len(salt))
	}
	nData := DataBlocksFor(size)
	if nData > MaxDataBlocks {
		return nil, fmt.Errorf("verity: image of %d bytes: expected at most %d blocks", size, MaxDataBlocks)
	}
	lv := levels(nData)
	// Level 0: the data blocks' hashes, streamed.
	tree := make([][]byte, max(len(lv), 1))
	tree[0] = make([]byte, max(1, len(lv))*BlockSize)
	if len(lv) > 0 {
		tree[0] = make([]byte, lv[0]*BlockSize)
	}
	block := make([]byte, BlockSize)
	for i := uint64(0); i < nData; i++ {
		off := int64(i) * BlockSize
		n := min(int64(BlockSize), size-off)
		if m, err := data.ReadAt(block[:n], off); int64(m) != n {
			return nil, fmt.Errorf("verity: reading data block %d: %w", i, err)
		}
		clear(block[n:])
		sum := hashBlock(salt, block)
		copy(tree[0][i*digestSize:], sum[:])
	}
	// Upper levels: hashes of the level below's blocks.
	for l := 1; l < len(lv); l++ {
		tree[l] = make([]byte, lv[l]*BlockSize)
		below := tree[l-1]
		for i := uint64(0); i < lv[l-1]; i++ {
			sum := hashBlock(salt, below[i*BlockSize:(i+1)*BlockSize])
			copy(tree[l][i*digestSize:], sum[:])
		}
	}
	var root [digestSize]byte
	if len(lv) == 0 {
		// One data block: its hash is the root, and there is no tree.
		copy(root[:], tree[0][:digestSize])
		tree = nil
	} else {
		top := tree[len(tree)-1]
		root = hashBlock(salt, top[:BlockSize])
	}
	p := &Params{RootHash: root[:], Salt: bytes.Clone(salt), DataBlocks: nData, HashOffset: nData * BlockSize}

	// The hash area: superblock, then the levels from the top down.
	sb := make([]byte, BlockSize)
	copy(sb, p.superblock())
	if _, err := hash.WriteAt(sb, 0); err != nil {
		return nil, fmt.Errorf("verity: writing the superblock: %w", err)
	}
	off := int64(BlockSize)
	for l := len(tree) - 1; l >= 0; l-- {
		if _, err := hash.WriteAt(tree[l], off); err != nil {
			return nil, fmt.Errorf("verity: writing hash level %d: %w", l, err)
		}
		off += int64(len(tree[l]))
	}
	return p, nil
}

// hashBlock is verity format 1's block hash: sha256(salt || block).
func hashBlock(salt, block []byte) [digestSize]byte {
	h := sha256.New()
	h.Write(salt)
	h.Write(block)
	var out [digestSize]byte
	h.Sum(out[:0])
	return out
}

// superblock is veritysetup's on-disk header (struct verity_sb): it lets
// `veritysetup verify|open` find the parameters; the kernel never reads it,
// and plumb-init takes the parameters from the signed command line instead.
func (p *Params) superblock() []byte {
	b := make([]byte, superblockSize)
	copy(b[0:8], "verity\x00\x00")
	binary.LittleEndian.PutUint32(b[8:], 1)  // version
	binary.LittleEndian.PutUint32(b[12:], 1) // hash type: format 1
	// uuid (16 bytes at 16): derived from the root hash, so that the same
	// image gives the same bytes.
	u := sha256.Sum256(append([]byte("plumb verity uuid "), p.RootHash...))
	copy(b[16:32], u[:16])
	b[16+6] = b[16+6]&0x0f | 0x40 // version 4 layout, for blkid
	b[16+8] = b[16+8]&0x3f | 0x80
	copy(b[32:64], "sha256")
	binary.LittleEndian.PutUint32(b[64:], BlockSize) // data block size
	binary.LittleEndian.PutUint32(b[68:], BlockSize) // hash block size
	binary.LittleEndian.PutUint64(b[72:], p.DataBlocks)
	binary.LittleEndian.PutUint16(b[80:], uint16(len(p.Salt)))
	copy(b[88:88+256], p.Salt)
	return b
}

// ReadWriterAt is a slot: a partition or an image file.
type ReadWriterAt interface {
	io.ReaderAt
	io.WriterAt
}

// Format makes a slot holding an image of size bytes from offset 0
// verifiable: it zeroes the rest of the image's last block, computes the
// tree and writes the hash area at the returned HashOffset. The caller
// syncs the slot, then checks the root hash against what it expects. The
// tree is computed from the data as read back from the slot, and the hash
// area is read back after writing and compared.
func Format(slot ReadWriterAt, size int64, salt []byte) (*Params, error) {
	if pad := DataBlocksFor(size)*BlockSize - uint64(size); pad > 0 {
		if _, err := slot.WriteAt(make([]byte, pad), size); err != nil {
			return nil, fmt.Errorf("verity: padding the image's last block: %w", err)
		}
	}
	nData := DataBlocksFor(size)
	area := &hashArea{}
	p, err := Build(slot, int64(nData)*BlockSize, salt, area)
	if err != nil {
		return nil, err
	}
	if _, err := slot.WriteAt(area.b, int64(p.HashOffset)); err != nil {
		return nil, fmt.Errorf("verity: writing the hash area at %d: %w", p.HashOffset, err)
	}
	back := make([]byte, len(area.b))
	if m, err := slot.ReadAt(back, int64(p.HashOffset)); m != len(back) {
		return nil, fmt.Errorf("verity: reading back the hash area at %d: %w", p.HashOffset, err)
	}
	if !bytes.Equal(back, area.b) {
		return nil, fmt.Errorf("verity: the hash area read back at %d differs from what was written: %w", p.HashOffset, ErrMismatch)
	}
	return p, nil
}

// Check recomputes the tree of the slot's data and compares it, block by
// block, with the hash area found at p.HashOffset of slot, and the root hash
// with p.RootHash. It reads the slot once; memory as for Build.
func Check(slot io.ReaderAt, p *Params) error {
	if err := p.Validate(); err != nil {
		return err
	}
	want := &hashArea{}
	got, err := Build(io.NewSectionReader(slot, 0, int64(p.HashOffset)), int64(p.DataBlocks)*BlockSize, p.Salt, want)
	if err != nil {
		return err
	}
	if !bytes.Equal(got.RootHash, p.RootHash) {
		return fmt.Errorf("verity: the slot's data gives root hash %x, expected %x: %w", got.RootHash, p.RootHash, ErrMismatch)
	}
	onDisk := make([]byte, len(want.b))
	if _, err := slot.ReadAt(onDisk, int64(p.HashOffset)); err != nil {
		return fmt.Errorf("verity: reading the hash area at %d: %w", p.HashOffset, err)
	}
	if !bytes.Equal(onDisk, want.b) {
		return fmt.Errorf("verity: the hash area at offset %d does not match the tree of the data: %w", p.HashOffset, ErrMismatch)
	}
	return nil
}

// hashArea is an in-memory io.WriterAt.
type hashArea struct{ b []byte }

func (h *hashArea) WriteAt(p []byte, off int64) (int, error) {
	if end := off + int64(len(p)); end > int64(len(h.b)) {
		h.b = append(h.b, make([]byte, end-int64(len(h.b)))...)
	}
	copy(h.b[off:], p)
	return len(p), nil
}

// Validate checks the parameters' shape.
func (p *Params) Validate() error {
	switch {
	case len(p.RootHash) != digestSize:
		return fmt.Errorf("verity: root hash: expected %d bytes, got %d", digestSize, len(p.RootHash))
	case len(p.Salt) == 0 || len(p.Salt) > 256:
		return fmt.Errorf("verity: salt: expected 1 to 256 bytes, got %d", len(p.Salt))
	case p.DataBlocks == 0 || p.DataBlocks > MaxDataBlocks:
		return fmt.Errorf("verity: data blocks: expected 1 to %d, got %d", uint64(MaxDataBlocks), p.DataBlocks)
	case p.HashOffset != p.DataBlocks*BlockSize:
		return fmt.Errorf("verity: hash offset: expected %d (data blocks × %d), got %d", p.DataBlocks*BlockSize, BlockSize, p.HashOffset)
	}
	return nil
}

// Command line parameters plumb-init reads (all four or none).
const (
	ArgRoot   = "plumb.verity.root"
	ArgSalt   = "plumb.verity.salt"
	ArgBlocks = "plumb.verity.blocks"
	ArgOffset = "plumb.verity.hashoffset"
)

// Cmdline is the parameters as kernel command line words.
func (p *Params) Cmdline() string {
	return fmt.Sprintf("%s=%x %s=%x %s=%d %s=%d", ArgRoot, p.RootHash, ArgSalt, p.Salt, ArgBlocks, p.DataBlocks, ArgOffset, p.HashOffset)
}

// ErrNone: the command line asks for no verity.
var ErrNone = errors.New("no plumb.verity parameters")

// FromCmdline reads the parameters from a parsed command line (parameter
// -> value). It returns ErrNone when none of them is present, and an
// error naming the parameter when some are missing or malformed.
func FromCmdline(args map[string]string) (*Params, error) {
	present := 0
	for _, k := range []string{ArgRoot, ArgSalt, ArgBlocks, ArgOffset} {
		if _, ok := args[k]; ok {
			present++
		}
	}
	if present == 0 {
		return nil, ErrNone
	}
	p := &Params{}
	var err error
	if p.RootHash, err = hex.DecodeString(args[ArgRoot]); err != nil || len(p.RootHash) != digestSize {
		return nil, fmt.Errorf("kernel command line: %s: expected 64 hex digits, got %q", ArgRoot, args[ArgRoot])
	}
	if p.Salt, err = hex.DecodeString(args[ArgSalt]); err != nil || len(p.Salt) == 0 {
		return nil, fmt.Errorf("kernel command line: %s: expected hex digits, got %q", ArgSalt, args[ArgSalt])
	}
	if p.DataBlocks, err = strconv.ParseUint(args[ArgBlocks], 10, 64); err != nil {
		return nil, fmt.Errorf("kernel command line: %s: expected a block count, got %q", ArgBlocks, args[ArgBlocks])
	}
	if p.HashOffset, err = strconv.ParseUint(args[ArgOffset], 10, 64); err != nil {
		return nil, fmt.Errorf("kernel command line: %s: expected a byte offset, got %q", ArgOffset, args[ArgOffset])
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("kernel command line: %w", err)
	}
	return p, nil
}

// Table is the device mapper table line of the verity target over dev
// (data and hash on the same device, as in a Plumb slot): start, length in
// 512-byte sectors, target type and its arguments.
func (p *Params) Table(dev string) (sectors uint64, target, args string) {
	hashStart := p.HashOffset/BlockSize + 1 // past the superblock
	args = strings.Join([]string{
		"1", dev, dev, strconv.Itoa(BlockSize), strconv.Itoa(BlockSize),
		strconv.FormatUint(p.DataBlocks, 10), strconv.FormatUint(hashStart, 10),
		"sha256", hex.EncodeToString(p.RootHash), hex.EncodeToString(p.Salt),
	}, " ")
	return p.DataBlocks * (BlockSize / 512), "verity", args
}

// JSON form for release facts and manifests.

// Facts is Params as JSON: hex strings and numbers.
type Facts struct {
	RootHash   string `json:"root_hash"`
	Salt       string `json:"salt"`
	DataBlocks uint64 `json:"data_blocks"`
	HashOffset uint64 `json:"hash_offset"`
}

// Facts returns the JSON form.
func (p *Params) Facts() *Facts {
	return &Facts{RootHash: hex.EncodeToString(p.RootHash), Salt: hex.EncodeToString(p.Salt), DataBlocks: p.DataBlocks, HashOffset: p.HashOffset}
}

// Params decodes and validates the JSON form; field names the errors.
func (f *Facts) Params(field string) (*Params, error) {
	p := &Params{DataBlocks: f.DataBlocks, HashOffset: f.HashOffset}
	var err error
	if p.RootHash, err = hex.DecodeString(f.RootHash); err != nil || len(p.RootHash) != digestSize {
		return nil, fmt.Errorf("%s.root_hash: expected 64 hex digits, got %q", field, f.RootHash)
	}
	if p.Salt, err = hex.DecodeString(f.Salt); err != nil || len(p.Salt) == 0 || len(p.Salt) > 256 {
		return nil, fmt.Errorf("%s.salt: expected 2 to 512 hex digits, got %q", field, f.Salt)
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return p, nil
}

// SaltFor is the salt Plumb uses for an image: its sha256 (hex), so that
// the same image always gives the same tree.
func SaltFor(imageSHA256 string) ([]byte, error) {
	s, err := hex.DecodeString(imageSHA256)
	if err != nil || len(s) != SaltSize {
		return nil, fmt.Errorf("verity: salt: expected the image's sha256 (64 hex digits), got %q", imageSHA256)
	}
	return s, nil
}

// HexRoot is p's root hash in lower-case hex.
func HexRoot(p *Params) string { return hex.EncodeToString(p.RootHash) }

// Section is a window of a disk (a partition) as a verity.ReadWriterAt.
type Section struct {
	RW interface {
		io.ReaderAt
		io.WriterAt
	}
	Start, Size int64
}

func (s Section) ReadAt(p []byte, off int64) (int, error) {
	if off >= s.Size {
		return 0, io.EOF
	}
	if rest := s.Size - off; int64(len(p)) > rest {
		n, err := s.RW.ReadAt(p[:rest], s.Start+off)
		if err == nil {
			err = io.EOF
		}
		return n, err
	}
	return s.RW.ReadAt(p, s.Start+off)
}

func (s Section) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > s.Size {
		return 0, fmt.Errorf("writing %d bytes at %d: outside the partition of %d bytes", len(p), off, s.Size)
	}
	return s.RW.WriteAt(p, s.Start+off)
}
