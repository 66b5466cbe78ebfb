package delta

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"regexp"
	"sort"

	"github.com/klauspost/compress/zstd"

	"github.com/plumb-os/plumb/format/blockcodec"
	wire "github.com/plumb-os/plumb/format/delta"
	"github.com/plumb-os/plumb/internal/ctxio"
	"github.com/plumb-os/plumb/internal/iox"
)

// Encode writes a bundle that turns the image old into the image new (both
// squashfs images written by builder/squashfs). The encoder keeps the
// metadata of both images and one file's content at a time in memory.
func Encode(ctx context.Context, w io.Writer, old, new io.ReaderAt, oldSize, newSize int64, opts Options) (wire.Stats, error) {
	var st wire.Stats
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	level := zstd.SpeedBestCompression
	if opts.Level != 0 {
		if opts.Level < 1 || opts.Level > 4 {
			return st, fmt.Errorf("delta options: level: expected 1..4, got %d", opts.Level)
		}
		level = zstd.EncoderLevel(opts.Level)
	}
	h := wire.Header{Version: wire.Version, BaseSize: oldSize, TargetSize: newSize}
	var err error
	if h.BaseSHA256, err = sumOf(ctx, old, oldSize); err != nil {
		return st, fmt.Errorf("delta: reading the old image: %w", err)
	}
	if h.TargetSHA256, err = sumOf(ctx, new, newSize); err != nil {
		return st, fmt.Errorf("delta: reading the new image: %w", err)
	}
	oi, err := readSqImage(old, oldSize)
	if err != nil {
		return st, fmt.Errorf("delta: old image: %w", err)
	}
	ni, err := readSqImage(new, newSize)
	if err != nil {
		return st, fmt.Errorf("delta: new image: %w", err)
	}
	e := &encoder{ctx: ctx, old: oi, new: ni, st: &st, blocks: map[[32]byte]uint64{}}
	if !opts.NoRecompress {
		h.Level = 15
		if ni.sb.flags&0x0400 != 0 {
			var b [4]byte
			if _, err := new.ReadAt(b[:], 98); err != nil {
				return st, fmt.Errorf("delta: new image: reading compressor options: %w", err)
			}
			h.Level = int(binary.LittleEndian.Uint32(b[:]))
		}
		h.Compressor, h.BlockSize = blockcodec.CompressorID, int(ni.sb.blockSize)
		if e.c, err = blockcodec.NewBlockCompressor(h.Level); err != nil {
			return st, fmt.Errorf("delta: creating compressor: %w", err)
		}
		defer e.c.Close()
	}
	if err := e.indexOld(); err != nil {
		return st, err
	}

	cw := &iox.CountingWriter{W: w}
	if _, err := cw.Write(h.Marshal()); err != nil {
		return st, fmt.Errorf("delta: writing header: %w", err)
	}
	zw, err := newBodyWriter(cw, opts.Level, level)
	if err != nil {
		return st, fmt.Errorf("delta: body: %w", err)
	}
	bw := bufio.NewWriterSize(zw, 1<<20)
	e.ops = &opWriter{w: bw}
	if traceFile != "" {
		f, err := os.Create(traceFile)
		if err != nil {
			return st, err
		}
		defer f.Close()
		e.trace, e.traceZ, e.traceCW = f, zw, cw
	}
	if err := e.run(); err != nil {
		zw.Close()
		return st, err
	}
	if err := e.ops.flushCopy(); err != nil {
		return st, fmt.Errorf("delta: writing body: %w", err)
	}
	bw.WriteByte(wire.OpEnd)
	if err := bw.Flush(); err != nil {
		return st, fmt.Errorf("delta: writing body: %w", err)
	}
	if err := zw.Close(); err != nil {
		return st, fmt.Errorf("delta: writing body: %w", err)
	}
	st.BundleBytes, st.TargetBytes = cw.N, newSize
	log.Info("delta encoded", "bytes", st.BundleBytes, "target", newSize, "copied", st.CopyBytes,
		"literal", st.LiteralBytes, "units", st.Units, "recompressed", st.Recompressed, "literal_blocks", st.LiteralBlks)
	return st, nil
}

func sumOf(ctx context.Context, r io.ReaderAt, n int64) ([32]byte, error) {
	h := sha256.New()
	if _, err := io.Copy(h, ctxio.Reader(ctx, io.NewSectionReader(r, 0, n))); err != nil {
		return [32]byte{}, err
	}
	return [32]byte(h.Sum(nil)), nil
}

type encoder struct {
	ctx      context.Context
	old, new *sqImage
	st       *wire.Stats
	c        *blockcodec.BlockCompressor
	ops      *opWriter
	blocks   map[[32]byte]uint64 // sha256 of a stored old block -> its offset
	byPath   map[string]*sqFile
	byNorm   map[string]*sqFile
	byBase   map[string]*sqFile
	fragRaw  map[uint32]int // old fragment block -> uncompressed length
	comp     []byte
	pos      int64 // bytes of the new image described so far

	// Tracing (analysis only, PLUMB_DELTA_TRACE=FILE): after each item the
	// body is flushed and the compressed bytes it cost are written down.
	innerDec *zstd.Decoder
	trace    io.Writer
	traceZ   io.Writer
	traceCW  *iox.CountingWriter
	traceAt  int64
	tracePos int64
}

var traceFile = os.Getenv("PLUMB_DELTA_TRACE")

func (e *encoder) traceItem(name string) error {
	e.ops.flushCopy()
	if err := e.ops.w.Flush(); err != nil {
		return err
	}
	if f, ok := e.traceZ.(interface{ Flush() error }); ok {
		if err := f.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintf(e.trace, "%d\t%d\t%s\n", e.traceCW.N-e.traceAt, e.pos-e.tracePos, name)
	e.traceAt, e.tracePos = e.traceCW.N, e.pos
	return nil
}

// version matches a version number: digit runs joined by dots, with an
// optional Debian-style revision ("6.1.0-56", "2.36", "1.2.3+b1").
var version = regexp.MustCompile(`[0-9]+(\.[0-9]+)+([-+~][0-9a-z.]+)?`)

// normalise replaces version numbers in a path by "#", so that a file in
// a directory named after a kernel ABI matches its predecessor.
func normalise(p string) string { return version.ReplaceAllString(p, "#") }

func (e *encoder) indexOld() error {
	e.byPath, e.byNorm, e.byBase = map[string]*sqFile{}, map[string]*sqFile{}, map[string]*sqFile{}
	e.fragRaw = map[uint32]int{}
	ambiguous := map[string]bool{}
	for _, f := range e.old.files {
		e.byPath[f.path] = f
		if n := normalise(f.path); e.byNorm[n] == nil {
			e.byNorm[n] = f
		}
		b := path.Base(f.path)
		if e.byBase[b] != nil {
			ambiguous[b] = true
		}
		e.byBase[b] = f
		off := f.start
		for _, s := range f.blocks {
			n := uint64(s &^ sqUncompressed)
			if n > 0 {
				if err := e.indexBlock(off, n); err != nil {
					return err
				}
			}
			off += n
		}
	}
	for b := range ambiguous {
		delete(e.byBase, b)
	}
	for _, fr := range e.old.frags {
		if err := e.indexBlock(fr.start, uint64(fr.size&^sqUncompressed)); err != nil {
			return err
		}
	}
	return nil
}

func (e *encoder) indexBlock(off, n uint64) error {
	if n > wire.MaxBlock || off+n > uint64(e.old.size) {
		return fmt.Errorf("delta: old image: block at %d of %d bytes is past the image", off, n)
	}
	b := make([]byte, n)
	if _, err := e.old.r.ReadAt(b, int64(off)); err != nil {
		return fmt.Errorf("delta: old image: reading block at %d: %w", off, err)
	}
	k := sha256.Sum256(b)
	if _, ok := e.blocks[k]; !ok {
		e.blocks[k] = off
	}
	return nil
}

func (e *encoder) match(p string) *sqFile {
	if f := e.byPath[p]; f != nil {
		return f
	}
	if f := e.byNorm[normalise(p)]; f != nil {
		return f
	}
	return e.byBase[path.Base(p)]
}

// item is a stretch of the new image's data: a file's blocks or a fragment block.
type item struct {
	start uint64
	file  *sqFile // nil for a fragment block
	frag  uint32
}

func (e *encoder) run() error {
	var items []item
	seen := map[uint64]bool{}
	fragFiles := map[uint32][]*sqFile{}
	for _, f := range e.new.files {
		if f.frag != sqInvalidFrag {
			fragFiles[f.frag] = append(fragFiles[f.frag], f)
		}
		if len(f.blocks) == 0 || f.storedLen() == 0 || seen[f.start] {
			continue
		}
		seen[f.start] = true
		items = append(items, item{start: f.start, file: f})
	}
	for i, fr := range e.new.frags {
		if fr.size&^sqUncompressed != 0 {
			items = append(items, item{start: fr.start, frag: uint32(i)})
		}
	}
	sort.SliceStable(items, func(i, j int) bool { return items[i].start < items[j].start })
	for _, it := range items {
		if err := e.ctx.Err(); err != nil {
			return err
		}
		if int64(it.start) < e.pos {
			continue // shares blocks already described
		}
		if err := e.gap(int64(it.start)); err != nil {
			return err
		}
		var err error
		if it.file != nil {
			err = e.fileItem(it.file)
		} else {
			err = e.fragItem(it.frag, fragFiles[it.frag])
		}
		if err != nil {
			return err
		}
		if e.trace != nil {
			name := "(fragment)"
			if it.file != nil {
				name = it.file.path
			}
			if err := e.traceItem(name); err != nil {
				return err
			}
		}
	}
	return e.gap(e.new.size)
}

// gap describes new image bytes up to end that belong to no file: the
// superblock, tables, padding. Chunks equal to the old image at the same
// offset are copied; others are literal.
func (e *encoder) gap(end int64) error {
	const chunk = 4096
	a, b := make([]byte, chunk), make([]byte, chunk)
	for e.pos < end {
		n := min(int64(chunk), end-e.pos)
		if _, err := e.new.r.ReadAt(a[:n], e.pos); err != nil {
			return fmt.Errorf("delta: new image: reading at %d: %w", e.pos, err)
		}
		var err error
		if e.pos+n <= e.old.size {
			if _, err := e.old.r.ReadAt(b[:n], e.pos); err != nil {
				return fmt.Errorf("delta: old image: reading at %d: %w", e.pos, err)
			}
		}
		if e.pos+n <= e.old.size && bytes.Equal(a[:n], b[:n]) {
			err = e.ops.copyOp(e.pos, n)
			e.st.CopyBytes += n
		} else {
			err = e.ops.dataOp(bytes.NewReader(a[:n]), n)
			e.st.LiteralBytes += n
		}
		if err != nil {
			return fmt.Errorf("delta: writing body: %w", err)
		}
		e.pos += n
	}
	return nil
}

// stored is one stored block of the new image.
type stored struct {
	b      []byte
	raw    bool
	rawLen uint64
	oldOff uint64
	inOld  bool
}

func (e *encoder) readStored(off uint64, size uint32, rawLen uint64) (stored, error) {
	n := uint64(size &^ sqUncompressed)
	s := stored{raw: size&sqUncompressed != 0, rawLen: rawLen, b: make([]byte, n)}
	if n > wire.MaxBlock || off+n > uint64(e.new.size) {
		return s, fmt.Errorf("delta: new image: block at %d of %d bytes is past the image", off, n)
	}
	if _, err := e.new.r.ReadAt(s.b, int64(off)); err != nil {
		return s, fmt.Errorf("delta: new image: reading block at %d: %w", off, err)
	}
	if n > 0 {
		s.oldOff, s.inOld = e.blocks[sha256.Sum256(s.b)]
	}
	return s, nil
}

func (e *encoder) unpack(im *sqImage, s []byte, raw bool, rawLen uint64) ([]byte, error) {
	if len(s) == 0 {
		return make([]byte, rawLen), nil
	}
	if raw {
		return s, nil
	}
	return im.dec.DecodeAll(s, make([]byte, 0, rawLen))
}

func (e *encoder) fileItem(f *sqFile) error {
	bs := uint64(e.new.sb.blockSize)
	blocks := make([]stored, len(f.blocks))
	off := f.start
	changed := false
	for i, sz := range f.blocks {
		rawLen := min(bs, f.size-uint64(i)*bs)
		s, err := e.readStored(off, sz, rawLen)
		if err != nil {
			return err
		}
		changed = changed || !s.inOld
		blocks[i] = s
		off += uint64(len(s.b))
	}
	if changed && e.c != nil && len(blocks) <= wire.MaxBlocks {
		var content []byte
		for _, s := range blocks {
			raw, err := e.unpack(e.new, s.b, s.raw, s.rawLen)
			if err != nil {
				return fmt.Errorf("delta: new image: %s: %w", f.path, err)
			}
			content = append(content, raw...)
		}
		var srcs []source
		if m := e.match(f.path); m != nil {
			var err error
			if srcs, err = e.sources(m, nil); err != nil {
				return err
			}
		}
		done, err := e.tryUnit(content, srcs, blocks, false)
		if err != nil || done {
			return err
		}
	}
	return e.plain(blocks)
}

// plain describes blocks as copies from the old image or literal bytes.
func (e *encoder) plain(blocks []stored) error {
	for _, s := range blocks {
		var err error
		if s.inOld {
			err = e.ops.copyOp(int64(s.oldOff), int64(len(s.b)))
			e.st.CopyBytes += int64(len(s.b))
		} else {
			err = e.ops.dataOp(bytes.NewReader(s.b), int64(len(s.b)))
			e.st.LiteralBytes += int64(len(s.b))
		}
		if err != nil {
			return fmt.Errorf("delta: writing body: %w", err)
		}
		e.pos += int64(len(s.b))
	}
	return nil
}

// tryUnit describes blocks as a patch of their content against the old
// content of srcs, if the decoder's compressor reproduces every changed
// block; it reports whether it did.
func (e *encoder) tryUnit(content []byte, srcs []source, blocks []stored, fragment bool) (bool, error) {
	u := &unit{sources: srcs, content: content}
	pos := uint64(0)
	recomp := 0
	for _, s := range blocks {
		raw := content[pos : pos+s.rawLen]
		pos += s.rawLen
		b := ublock{rawLen: s.rawLen, mode: wire.BlkFile}
		if fragment {
			b.mode = wire.BlkFragment
		}
		if s.inOld {
			b.mode, b.copyOff, b.copyLen = wire.BlkCopy, s.oldOff, uint64(len(s.b))
		} else {
			if e.comp == nil {
				e.comp = make([]byte, 0, wire.MaxBlock+wire.MaxBlock/128+64)
			}
			out, err := wire.Recompress(e.c, e.comp, raw, fragment)
			if err != nil {
				return false, err
			}
			if !bytes.Equal(out, s.b) {
				e.st.LiteralBlks++
				return false, nil
			}
			recomp++
		}
		u.blocks = append(u.blocks, b)
	}
	old, err := e.dict(srcs)
	if err != nil {
		return false, err
	}
	u.old = old
	if oi, ni, ok := e.innerStreams(old, content); ok {
		u.inner, u.old, u.content, u.oldInner, u.newInner = wire.InnerZstd, oi, ni, len(oi), len(ni)
	} else if k, ok := lz4Kernel(old, content); ok {
		u.inner, u.old, u.content, u.lz4 = wire.InnerLZ4, k.old, k.new, k.fields
		e.st.LZ4Units++
	}
	cs, err := bsdiff(u.old, u.content)
	if err != nil {
		return false, fmt.Errorf("delta: making a patch: %w", err)
	}
	// Fold instructions that produce nothing into the previous one's seek
	// (or, before the first, into a leading seek-only instruction): every
	// other instruction produces bytes, so every patch segment does.
	var seek int64
	for _, c := range cs {
		switch {
		case c.add == 0 && c.extra == 0:
			seek += c.seek
			continue
		case seek != 0 && len(u.ctrls) > 0:
			u.ctrls[len(u.ctrls)-1].seek += seek
		case seek != 0 && c.add == 0:
			c.seek += seek
		case seek != 0:
			u.ctrls = append(u.ctrls, ctrl{seek: seek})
		}
		seek = 0
		u.ctrls = append(u.ctrls, c)
	}
	if err := e.ops.unitOp(u); err != nil {
		return false, fmt.Errorf("delta: writing body: %w", err)
	}
	for _, s := range blocks {
		e.pos += int64(len(s.b))
		e.st.UnitBytes += int64(len(s.b))
	}
	e.st.Units++
	e.st.Recompressed += recomp
	if len(srcs) > 0 {
		e.st.MatchedFiles++
	}
	return true, nil
}

// innerStreams returns the uncompressed streams of old and new content
// when both are zstd streams within maxInner and newInnerEncoder gives new
// back byte for byte (builder/initramfs's archives).
func (e *encoder) innerStreams(old, content []byte) ([]byte, []byte, bool) {
	magic := []byte{0x28, 0xb5, 0x2f, 0xfd}
	if !bytes.HasPrefix(old, magic) || !bytes.HasPrefix(content, magic) || len(old) > wire.MaxInner || len(content) > wire.MaxInner {
		return nil, nil, false
	}
	if e.innerDec == nil {
		var err error
		if e.innerDec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxMemory(wire.MaxInner), zstd.WithDecoderMaxWindow(wire.MaxInner)); err != nil {
			return nil, nil, false
		}
	}
	oi, err := e.innerDec.DecodeAll(old, nil)
	if err != nil {
		return nil, nil, false
	}
	ni, err := e.innerDec.DecodeAll(content, nil)
	if err != nil {
		return nil, nil, false
	}
	// Re-compress in uneven writes, as the decoder's patch will.
	var b bytes.Buffer
	enc, err := wire.NewInnerEncoder(&b)
	if err != nil {
		return nil, nil, false
	}
	for p, k := ni, 1; len(p) > 0; k = k*7%65521 + 1 {
		n := min(k, len(p))
		enc.Write(p[:n])
		p = p[n:]
	}
	if enc.Close() != nil || !bytes.Equal(b.Bytes(), content) {
		return nil, nil, false
	}
	return oi, ni, true
}

// sources lists the stored pieces of an old file's content, appending to
// srcs, as long as the total stays within maxOld and maxSources.
func (e *encoder) sources(f *sqFile, srcs []source) ([]source, error) {
	var total uint64
	for _, s := range srcs {
		total += s.len
	}
	if total+f.size > maxOld || len(srcs)+len(f.blocks)+1 > wire.MaxSources {
		return srcs, nil
	}
	bs := uint64(e.old.sb.blockSize)
	off := f.start
	for i, sz := range f.blocks {
		n := uint64(sz &^ sqUncompressed)
		rawLen := min(bs, f.size-uint64(i)*bs)
		kind := byte(wire.SrcZstd)
		switch {
		case n == 0:
			kind = wire.SrcSparse
		case sz&sqUncompressed != 0:
			kind = wire.SrcRaw
		}
		srcs = append(srcs, source{off: off, stored: n, kind: kind, rawLen: rawLen, len: rawLen})
		off += n
	}
	if f.frag != sqInvalidFrag {
		fr := e.old.frags[f.frag]
		n := uint64(fr.size &^ sqUncompressed)
		rawLen, ok := e.fragRaw[f.frag]
		if !ok {
			b := make([]byte, n)
			if _, err := e.old.r.ReadAt(b, int64(fr.start)); err != nil {
				return nil, fmt.Errorf("delta: old image: reading fragment %d: %w", f.frag, err)
			}
			raw, err := e.unpack(e.old, b, fr.size&sqUncompressed != 0, 0)
			if err != nil {
				return nil, fmt.Errorf("delta: old image: fragment %d: %w", f.frag, err)
			}
			rawLen = len(raw)
			e.fragRaw[f.frag] = rawLen
		}
		tail := f.size - uint64(len(f.blocks))*bs
		if uint64(f.fragOff)+tail > uint64(rawLen) {
			return nil, fmt.Errorf("delta: old image: %s: fragment slice past the block", f.path)
		}
		kind := byte(wire.SrcZstd)
		if fr.size&sqUncompressed != 0 {
			kind = wire.SrcRaw
		}
		srcs = append(srcs, source{off: fr.start, stored: n, kind: kind, rawLen: uint64(rawLen), sliceOff: uint64(f.fragOff), len: tail})
	}
	return srcs, nil
}

// dict builds a dictionary from sources, as the decoder will.
func (e *encoder) dict(srcs []source) ([]byte, error) {
	var d []byte
	for _, s := range srcs {
		b := make([]byte, s.stored)
		if _, err := e.old.r.ReadAt(b, int64(s.off)); err != nil {
			return nil, fmt.Errorf("delta: old image: reading at %d: %w", s.off, err)
		}
		raw, err := e.unpack(e.old, b, s.kind == wire.SrcRaw, s.rawLen)
		if err != nil {
			return nil, fmt.Errorf("delta: old image: block at %d: %w", s.off, err)
		}
		d = append(d, raw[s.sliceOff:s.sliceOff+s.len]...)
	}
	return d, nil
}

func (e *encoder) fragItem(i uint32, files []*sqFile) error {
	fr := e.new.frags[i]
	s, err := e.readStored(fr.start, fr.size, 0)
	if err != nil {
		return err
	}
	if !s.inOld && e.c != nil {
		content, err := e.unpack(e.new, s.b, s.raw, 0)
		if err != nil {
			return fmt.Errorf("delta: new image: fragment %d: %w", i, err)
		}
		s.rawLen = uint64(len(content))
		var srcs []source
		used := map[*sqFile]bool{}
		sort.SliceStable(files, func(a, b int) bool { return files[a].fragOff < files[b].fragOff })
		for _, f := range files {
			if m := e.match(f.path); m != nil && !used[m] {
				used[m] = true
				if srcs, err = e.sources(m, srcs); err != nil {
					return err
				}
			}
		}
		done, err := e.tryUnit(content, srcs, []stored{s}, true)
		if err != nil || done {
			return err
		}
	}
	return e.plain([]stored{s})
}
