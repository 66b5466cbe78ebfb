package delta

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"sort"

	"github.com/klauspost/compress/zstd"

	"github.com/plumb-os/plumb/format/blockcodec"
	"github.com/plumb-os/plumb/format/lz4legacy"
	"github.com/plumb-os/plumb/internal/ctxio"
	"github.com/plumb-os/plumb/internal/iox"
)

// Apply reads the bundle and writes the new image to w sequentially,
// reading the old image at random. It checks old's size and sha256 against
// the bundle's base before writing anything (ErrWrongBase), and the
// result's size and sha256 against the bundle's target at the end. Memory
// is bounded by MaxMemory whatever the image size. Blocks are re-compressed
// on all cores (at most 4 goroutines). On error, w holds a partial image
// that the caller must not use.
func Apply(ctx context.Context, w io.Writer, old io.ReaderAt, oldSize int64, bundle io.Reader) (Stats, error) {
	var st Stats
	cr := &iox.CountingReader{R: bundle}
	h, err := ReadHeader(cr)
	if err != nil {
		return st, err
	}
	if h.BaseSize != oldSize {
		return st, fmt.Errorf("delta: %w: expected %d bytes, got %d", ErrWrongBase, h.BaseSize, oldSize)
	}
	if h.Compressor != "" && h.Compressor != blockcodec.CompressorID {
		return st, fmt.Errorf("delta: bundle needs zstd %q to re-compress blocks, this build has %q", h.Compressor, blockcodec.CompressorID)
	}
	hs := sha256.New()
	if _, err := io.CopyBuffer(hs, ctxio.Reader(ctx, io.NewSectionReader(old, 0, oldSize)), make([]byte, 256<<10)); err != nil {
		return st, fmt.Errorf("delta: reading the old image: %w", err)
	}
	if got := [32]byte(hs.Sum(nil)); got != h.BaseSHA256 {
		return st, fmt.Errorf("delta: %w: expected sha256 %s, got %s", ErrWrongBase, hex.EncodeToString(h.BaseSHA256[:]), hex.EncodeToString(got[:]))
	}

	zr, err := zstd.NewReader(cr, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(BodyWindow), zstd.WithDecoderMaxMemory(1<<40))
	if err != nil {
		return st, fmt.Errorf("delta: body: %w", err)
	}
	defer zr.Close()
	dec, err := blockcodec.NewBlockDecompressor()
	if err != nil {
		return st, fmt.Errorf("delta: creating block decoder: %w", err)
	}
	defer dec.Close()
	if h.Compressor == "" && (h.BlockSize < 4096 || h.BlockSize > MaxBlock) {
		h.BlockSize = 4096 // no UNIT needs more (ReadHeader checks it when a compressor is named)
	}
	bufLen := max(h.BlockSize, 64<<10)
	p, err := newPipe(ctx, w, old, h, bufLen)
	if err != nil {
		return st, err
	}
	a := &applier{
		ctx: ctx, h: h, old: old, oldSize: oldSize, dec: dec, st: &st, p: p, bufLen: bufLen,
		cache: make([]cached, max(cacheBytes/bufLen, 4)),
		in:    &opReader{r: bufio.NewReaderSize(zr, 64<<10)},
	}
	err = a.run()
	if a.innerEnc != nil {
		a.innerEnc.Close()
	}
	if a.innerDec != nil {
		a.innerDec.Close()
	}
	werr := p.close()
	if err == nil || errors.Is(err, errPipeClosed) && werr != nil {
		err = werr
	}
	st.CopyBytes, st.LiteralBytes, st.UnitBytes, st.Recompressed = p.copyBytes, p.literalBytes, p.unitBytes, p.recompressed
	if err != nil {
		return st, err
	}
	st.BundleBytes = cr.N
	st.TargetBytes = p.out.N
	if p.out.N != h.TargetSize {
		return st, fmt.Errorf("delta: result: expected %d bytes, got %d", h.TargetSize, p.out.N)
	}
	if got := [32]byte(p.out.H.Sum(nil)); got != h.TargetSHA256 {
		return st, fmt.Errorf("delta: result: expected sha256 %s, got %s (corrupt bundle)", hex.EncodeToString(h.TargetSHA256[:]), hex.EncodeToString(got[:]))
	}
	return st, nil
}

type applier struct {
	ctx     context.Context
	h       Header
	old     io.ReaderAt
	oldSize int64
	dec     *blockcodec.BlockDecompressor
	in      *opReader
	p       *pipe
	st      *Stats
	bufLen  int
	// promised is the least number of target bytes the operations so far
	// produce (compressed blocks count 0): a bound for lengths.
	promised int64

	srcs   []asource
	blocks []ublock
	cache  []cached
	tick   uint64
	stored []byte

	innerSrc, innerOld, scratch []byte
	innerEnc                    *zstd.Encoder
	innerDec                    *zstd.Decoder
	lz4New                      []byte            // an inner LZ4 unit's new chunk (innerSrc: a chunk's stored bytes)
	lz4Old                      [2][]byte         // old chunks, decompressed
	lz4Held                     [2]int            // which chunk each holds, -1 for none
	lz4Last                     int               // the one used last
	lz4Chunks                   []lz4legacy.Chunk // the old stream's chunks
	ctrls                       []ctrl
	diff                        []byte
}

// asource is a source with its place in the UNIT's old content.
type asource struct {
	source
	at uint64 // offset of its slice in the old content
}

type cached struct {
	off  uint64 // stored offset in the old image; valid if raw != nil
	raw  []byte
	used uint64
}

func (a *applier) room() uint64 { return uint64(a.h.TargetSize - a.promised) }

func (a *applier) run() error {
	for {
		if err := a.ctx.Err(); err != nil {
			return err
		}
		op, err := a.in.byte("operation")
		if err != nil {
			return err
		}
		switch op {
		case OpEnd:
			// The body must end here.
			if _, err := a.in.r.ReadByte(); !errors.Is(err, io.EOF) {
				if err == nil {
					return errors.New("delta bundle: bytes after the end operation")
				}
				return fmt.Errorf("delta bundle: %w", err)
			}
			return nil
		case OpCopy:
			off, err := a.in.uvarint("copy offset", uint64(a.oldSize))
			if err != nil {
				return err
			}
			n, err := a.in.uvarint("copy length", min(uint64(a.oldSize)-off, a.room()))
			if err != nil {
				return err
			}
			a.promised += int64(n)
			if err := a.p.send(&job{kind: jobCopy, off: int64(off), n: int64(n)}); err != nil {
				return err
			}
		case OpData:
			n, err := a.in.uvarint("literal length", a.room())
			if err != nil {
				return err
			}
			a.promised += int64(n)
			for n > 0 {
				b, err := a.p.buf()
				if err != nil {
					return err
				}
				k := min(n, uint64(len(b)))
				if _, err := io.ReadFull(a.in.r, b[:k]); err != nil {
					a.p.put(b)
					return fmt.Errorf("delta bundle: reading literal bytes: %w", truncated(err))
				}
				if err := a.p.send(&job{kind: jobData, raw: b, out: b[:k]}); err != nil {
					return err
				}
				n -= k
			}
		case OpUnit:
			if err := a.unit(); err != nil {
				return err
			}
		default:
			return fmt.Errorf("delta bundle: operation: expected 0..3, got %d (corrupt bundle)", op)
		}
	}
}

func (a *applier) unit() error {
	in := a.in
	inner, err := in.byte("unit inner compression")
	if err != nil {
		return err
	}
	if inner > InnerLZ4 {
		return fmt.Errorf("delta bundle: unit inner compression: expected 0..2, got %d", inner)
	}
	nsrc, err := in.uvarint("source count", MaxSources)
	if err != nil {
		return err
	}
	a.srcs = a.srcs[:0]
	var oldLen uint64
	for range nsrc {
		var s asource
		if s.off, err = in.uvarint("source offset", uint64(a.oldSize)); err != nil {
			return err
		}
		if s.stored, err = in.uvarint("source stored length", min(uint64(a.oldSize)-s.off, MaxBlock)); err != nil {
			return err
		}
		if s.kind, err = in.byte("source kind"); err != nil {
			return err
		}
		if s.kind > SrcSparse {
			return fmt.Errorf("delta bundle: source kind: expected 0..2, got %d", s.kind)
		}
		if s.rawLen, err = in.uvarint("source raw length", MaxBlock); err != nil {
			return err
		}
		if s.sliceOff, err = in.uvarint("source slice offset", s.rawLen); err != nil {
			return err
		}
		if s.len, err = in.uvarint("source slice length", s.rawLen-s.sliceOff); err != nil {
			return err
		}
		if s.len == 0 {
			continue
		}
		s.at = oldLen
		oldLen += s.len
		a.srcs = append(a.srcs, s)
	}
	nblk, err := in.uvarint("block count", MaxBlocks)
	if err != nil {
		return err
	}
	a.blocks = a.blocks[:0]
	var contentLen uint64
	for range nblk {
		var b ublock
		if b.mode, err = in.byte("block mode"); err != nil {
			return err
		}
		if b.rawLen, err = in.uvarint("block raw length", uint64(a.h.BlockSize)); err != nil {
			return err
		}
		if b.rawLen == 0 {
			return errors.New("delta bundle: block raw length: expected at least 1, got 0")
		}
		switch b.mode {
		case BlkFile, BlkFragment:
			if a.h.Compressor == "" {
				return errors.New("delta bundle: re-compressed block in a bundle that names no compressor")
			}
		case BlkCopy:
			if b.copyOff, err = in.uvarint("block copy offset", uint64(a.oldSize)); err != nil {
				return err
			}
			if b.copyLen, err = in.uvarint("block copy length", min(uint64(a.oldSize)-b.copyOff, a.room(), MaxBlock)); err != nil {
				return err
			}
			a.promised += int64(b.copyLen)
		default:
			return fmt.Errorf("delta bundle: block mode: expected 0, 2 or 3, got %d", b.mode)
		}
		contentLen += b.rawLen
		a.blocks = append(a.blocks, b)
	}
	a.st.Units++

	// The blocks, filled in order.
	bi := 0
	var cur []byte // the current block's buffer
	fill := uint64(0)
	nextBlock := func() ([]byte, error) {
		if bi >= len(a.blocks) {
			return nil, errors.New("delta bundle: patch: content past the unit's blocks")
		}
		if cur == nil {
			b, err := a.p.buf()
			if err != nil {
				return nil, err
			}
			cur, fill = b, 0
		}
		return cur[fill:a.blocks[bi].rawLen], nil
	}
	commitBlock := func(n int) error {
		fill += uint64(n)
		if fill < a.blocks[bi].rawLen {
			return nil
		}
		b := a.blocks[bi]
		bi++
		var j *job
		if b.mode == BlkCopy {
			a.p.put(cur)
			j = &job{kind: jobCopy, off: int64(b.copyOff), n: int64(b.copyLen), unit: true}
		} else {
			j = &job{kind: jobCompress, raw: cur, in: cur[:b.rawLen], fragment: b.mode == BlkFragment, unit: true}
		}
		cur = nil
		return a.p.send(j)
	}
	defer func() {
		if cur != nil {
			a.p.put(cur)
		}
	}()

	switch inner {
	case InnerNone:
		p := patch{next: nextBlock, commit: commitBlock, addOld: a.addOld, oldLen: oldLen, total: contentLen, ctrls: a.ctrls[:0], diff: &a.diff}
		return p.run(in)
	case InnerLZ4:
		if err := a.lz4Unit(oldLen, contentLen, &blockFiller{next: nextBlock, commit: commitBlock}); err != nil {
			return err
		}
		if bi != len(a.blocks) {
			return fmt.Errorf("delta bundle: unit: the kernel filled %d of %d blocks", bi, len(a.blocks))
		}
		a.dropLZ4()
		return nil
	}
	a.lz4New, a.lz4Old = nil, [2][]byte{} // an LZ4 unit's buffers are not held together with these (MaxMemory)

	// Inner zstd: the patch makes the uncompressed stream from the old
	// content's, and the stream is compressed into the blocks.
	oldInner, err := in.uvarint("unit old stream length", MaxInner)
	if err != nil {
		return err
	}
	newInner, err := in.uvarint("unit new stream length", MaxInner)
	if err != nil {
		return err
	}
	if oldLen > MaxInner {
		return fmt.Errorf("delta bundle: unit old content: expected at most %d bytes, got %d", MaxInner, oldLen)
	}
	a.innerSrc = grow(a.innerSrc, int(oldLen))
	clear(a.innerSrc)
	if err := a.addOld(a.innerSrc, 0); err != nil {
		return err
	}
	if cap(a.innerOld) < int(oldInner) {
		a.innerOld = make([]byte, 0, oldInner)
	}
	if a.innerDec == nil {
		if a.innerDec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxMemory(MaxInner), zstd.WithDecoderMaxWindow(MaxInner)); err != nil {
			return fmt.Errorf("delta: creating the inner zstd decoder: %w", err)
		}
	}
	old, err := a.innerDec.DecodeAll(a.innerSrc, a.innerOld[:0])
	if err != nil || uint64(len(old)) != oldInner {
		return fmt.Errorf("delta: unit old content: expected a zstd stream of %d bytes (wrong base?)", oldInner)
	}
	a.innerOld = old
	fw := &blockFiller{next: nextBlock, commit: commitBlock}
	if a.innerEnc == nil {
		if a.innerEnc, err = NewInnerEncoder(fw); err != nil {
			return fmt.Errorf("delta: creating the inner zstd encoder: %w", err)
		}
	} else {
		a.innerEnc.Reset(fw)
	}
	a.scratch = grow(a.scratch, 64<<10)
	p := patch{
		next:   func() ([]byte, error) { return a.scratch, nil },
		commit: func(n int) error { _, err := a.innerEnc.Write(a.scratch[:n]); return err },
		addOld: func(dst []byte, off uint64) error {
			addBytes(dst, a.innerOld[off:off+uint64(len(dst))])
			return nil
		},
		oldLen: oldInner, total: newInner, ctrls: a.ctrls[:0], diff: &a.diff,
	}
	if err := p.run(in); err != nil {
		return err
	}
	if err := a.innerEnc.Close(); err != nil {
		return err
	}
	if bi != len(a.blocks) {
		return fmt.Errorf("delta bundle: unit: the stream filled %d of %d blocks", bi, len(a.blocks))
	}
	a.dropInner()
	return nil
}

// dropInner lets go of an inner zstd unit's streams and coders (about 21
// MiB with an initramfs) once its blocks are written, and frees them at
// once, as dropLZ4 does for a kernel (see there why FreeOSMemory): kept
// for a next unit, they were live beside a kernel unit's buffers until
// dropped there. A bundle has an inner unit or two (initramfs images): a
// new coder for each costs little.
func (a *applier) dropInner() {
	if a.innerEnc != nil {
		a.innerEnc.Close()
	}
	if a.innerDec != nil {
		a.innerDec.Close()
	}
	a.innerEnc, a.innerDec, a.innerOld, a.innerSrc = nil, nil, nil, nil
	debug.FreeOSMemory()
}

// blockFiller is an io.Writer into a unit's blocks.
type blockFiller struct {
	next   func() ([]byte, error)
	commit func(int) error
}

func (f *blockFiller) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		dst, err := f.next()
		if err != nil {
			return 0, err
		}
		k := copy(dst, p)
		if err := f.commit(k); err != nil {
			return 0, err
		}
		p = p[k:]
	}
	return n, nil
}

// patch runs a unit's patch instructions: total bytes are produced into
// the buffers next gives (then handed to commit), each made of difference
// bytes added to the old content (addOld) or of extra bytes.
type patch struct {
	next          func() ([]byte, error)
	commit        func(int) error
	addOld        func(dst []byte, off uint64) error
	oldLen, total uint64
	ctrls         []ctrl
	diff          *[]byte
}

func (p *patch) run(in *opReader) error {
	var opos int64
	var produced uint64
	for produced < p.total {
		n, err := in.uvarint("patch segment length", MaxSegCtrls)
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("delta bundle: patch segment length: expected 1..4096, got 0")
		}
		p.ctrls = p.ctrls[:0]
		var adds, extras uint64
		for range n {
			var c ctrl
			add, err := in.uvarint("patch add length", min(p.total-produced-adds-extras, MaxSegDiff-adds))
			if err != nil {
				return err
			}
			extra, err := in.uvarint("patch extra length", p.total-produced-adds-extras-add)
			if err != nil {
				return err
			}
			c.seek, err = binary.ReadVarint(in.r)
			if err != nil {
				return fmt.Errorf("delta bundle: reading patch seek: %w", truncated(err))
			}
			if c.seek > 1<<40 || c.seek < -(1<<40) {
				return fmt.Errorf("delta bundle: patch seek: expected at most 2^40 bytes, got %d", c.seek)
			}
			c.add, c.extra = int(add), int(extra)
			adds += add
			extras += extra
			p.ctrls = append(p.ctrls, c)
		}
		if adds+extras == 0 {
			return errors.New("delta bundle: patch segment: produces nothing (corrupt bundle)")
		}
		if cap(*p.diff) < int(adds) {
			*p.diff = make([]byte, adds, MaxSegDiff)
		}
		diff := (*p.diff)[:adds]
		if _, err := io.ReadFull(in.r, diff); err != nil {
			return fmt.Errorf("delta bundle: reading patch: %w", truncated(err))
		}
		for _, c := range p.ctrls {
			add := uint64(c.add)
			if add > 0 && (opos < 0 || uint64(opos)+add > p.oldLen) {
				return fmt.Errorf("delta bundle: patch: old content %d..%d past its %d bytes", opos, opos+int64(add), p.oldLen)
			}
			for add > 0 {
				dst, err := p.next()
				if err != nil {
					return err
				}
				k := min(uint64(len(dst)), add)
				dst = dst[:k]
				copy(dst, diff)
				diff = diff[k:]
				if err := p.addOld(dst, uint64(opos)); err != nil {
					return err
				}
				opos += int64(k)
				add -= k
				produced += k
				if err := p.commit(int(k)); err != nil {
					return err
				}
			}
			extra := uint64(c.extra)
			for extra > 0 {
				dst, err := p.next()
				if err != nil {
					return err
				}
				k := min(uint64(len(dst)), extra)
				if _, err := io.ReadFull(in.r, dst[:k]); err != nil {
					return fmt.Errorf("delta bundle: reading patch: %w", truncated(err))
				}
				extra -= k
				produced += k
				if err := p.commit(int(k)); err != nil {
					return err
				}
			}
			opos += c.seek
		}
	}
	return nil
}

// addOld adds the old content at off to dst, byte by byte.
func (a *applier) addOld(dst []byte, off uint64) error {
	for len(dst) > 0 {
		i := sort.Search(len(a.srcs), func(i int) bool { return a.srcs[i].at+a.srcs[i].len > off })
		if i == len(a.srcs) {
			return errors.New("delta bundle: patch: old content past its end")
		}
		s := &a.srcs[i]
		raw, err := a.source(s)
		if err != nil {
			return err
		}
		from := raw[s.sliceOff+(off-s.at) : s.sliceOff+s.len]
		n := min(len(from), len(dst))
		addBytes(dst[:n], from[:n])
		dst = dst[n:]
		off += uint64(n)
	}
	return nil
}

func addBytes(dst, src []byte) {
	src = src[:len(dst)]
	for len(dst) >= 8 {
		// Byte-wise addition of 8 lanes without carries between them.
		x := binary.LittleEndian.Uint64(dst)
		y := binary.LittleEndian.Uint64(src)
		const h = 0x8080808080808080
		s := (x &^ h) + (y &^ h)
		binary.LittleEndian.PutUint64(dst, s^((x^y)&h))
		dst, src = dst[8:], src[8:]
	}
	for i := range dst {
		dst[i] += src[i]
	}
}

// source returns a source's whole decompressed block, from the cache.
func (a *applier) source(s *asource) ([]byte, error) {
	a.tick++
	lru := 0
	for i := range a.cache {
		c := &a.cache[i]
		if c.raw != nil && c.off == s.off && uint64(len(c.raw)) == s.rawLen {
			c.used = a.tick
			return c.raw, nil
		}
		if c.used < a.cache[lru].used {
			lru = i
		}
	}
	c := &a.cache[lru]
	if cap(c.raw) < int(s.rawLen) {
		c.raw = make([]byte, 0, max(a.bufLen, int(s.rawLen)))
	}
	raw := c.raw[:0]
	switch s.kind {
	case SrcSparse:
		raw = raw[:s.rawLen]
		clear(raw)
	case SrcRaw, SrcZstd:
		a.stored = grow(a.stored, int(s.stored))
		if _, err := a.old.ReadAt(a.stored, int64(s.off)); err != nil {
			return nil, fmt.Errorf("delta: reading old block at %d: %w", s.off, err)
		}
		if s.kind == SrcRaw {
			raw = append(raw, a.stored...)
		} else {
			raw = raw[:s.rawLen]
			n, err := a.dec.DecompressInto(raw, a.stored)
			if err != nil {
				c.raw = nil
				return nil, fmt.Errorf("delta: old block at %d: %w (wrong base?)", s.off, err)
			}
			raw = raw[:n]
		}
	}
	if uint64(len(raw)) != s.rawLen {
		c.raw = nil
		return nil, fmt.Errorf("delta: old block at %d: expected %d bytes, got %d (wrong base?)", s.off, s.rawLen, len(raw))
	}
	c.raw, c.off, c.used = raw, s.off, a.tick
	return raw, nil
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

// The output pipeline: the applier sends jobs in target order; workers
// re-compress blocks in parallel; one writer writes jobs in order, hashing
// them. pipeDepth buffers bound the blocks in flight.

const (
	jobCopy     = iota // copy n bytes of the old image at off
	jobData            // write out
	jobCompress        // re-compress in, then write
)

type job struct {
	kind     int
	off, n   int64
	raw      []byte // a pipe buffer to give back once written
	in, out  []byte
	comp     []byte // a compression buffer to give back
	fragment bool
	unit     bool
	err      error
	ready    chan struct{}
}

var errPipeClosed = errors.New("delta: output stopped")

type pipe struct {
	ctx   context.Context
	old   io.ReaderAt
	h     Header
	out   *iox.HashWriter
	order chan *job
	work  chan *job
	bufs  chan []byte
	comps chan []byte
	quit  chan struct{}
	werr  error
	wdone chan struct{}
	cdone chan struct{}

	copyBytes, literalBytes, unitBytes int64
	recompressed                       int
}

func newPipe(ctx context.Context, w io.Writer, old io.ReaderAt, h Header, bufLen int) (*pipe, error) {
	p := &pipe{
		ctx: ctx, old: old, h: h, out: &iox.HashWriter{W: w, H: sha256.New()},
		order: make(chan *job, pipeDepth), work: make(chan *job, pipeDepth),
		bufs: make(chan []byte, pipeDepth), comps: make(chan []byte, pipeDepth),
		quit: make(chan struct{}), wdone: make(chan struct{}), cdone: make(chan struct{}),
	}
	for range pipeDepth {
		p.bufs <- make([]byte, bufLen)
	}
	workers := 0
	if h.Compressor != "" {
		workers = min(max(runtime.GOMAXPROCS(0), 1), 4)
		for range pipeDepth {
			p.comps <- make([]byte, 0, bufLen+bufLen/128+64)
		}
	}
	cs := make([]*blockcodec.BlockCompressor, workers)
	for i := range cs {
		c, err := blockcodec.NewBlockCompressor(h.Level)
		if err != nil {
			for _, c := range cs[:i] {
				c.Close()
			}
			return nil, fmt.Errorf("delta: creating compressor: %w", err)
		}
		cs[i] = c
	}
	done := make(chan struct{}, workers)
	for _, c := range cs {
		go func() {
			defer func() { c.Close(); done <- struct{}{} }()
			for j := range p.work {
				comp := <-p.comps // never blocks long: each job in flight holds one buffer
				j.comp = comp
				j.out, j.err = Recompress(c, comp, j.in, j.fragment)
				close(j.ready)
			}
		}()
	}
	go func() {
		for range workers {
			<-done
		}
		close(p.cdone)
	}()
	go p.writer()
	return p, nil
}

func (p *pipe) writer() {
	defer close(p.wdone)
	buf := make([]byte, 256<<10)
	failed := false
	fail := func(err error) {
		if !failed {
			failed, p.werr = true, err
			close(p.quit)
		}
	}
	for j := range p.order {
		if j.ready != nil {
			<-j.ready
		}
		if !failed {
			if err := p.ctx.Err(); err != nil {
				fail(err)
			}
		}
		if !failed {
			var n int64
			switch {
			case j.err != nil:
				fail(j.err)
			case j.kind == jobCopy:
				var err error
				if n, err = io.CopyBuffer(p.out, io.NewSectionReader(p.old, j.off, j.n), buf); err != nil {
					fail(fmt.Errorf("delta: copying %d bytes at %d of the old image: %w", j.n, j.off, err))
				}
			default:
				n = int64(len(j.out))
				if p.out.N+n > p.h.TargetSize {
					fail(fmt.Errorf("delta bundle: output past the target's %d bytes (corrupt bundle)", p.h.TargetSize))
				} else if _, err := p.out.Write(j.out); err != nil {
					fail(fmt.Errorf("delta: writing: %w", err))
				}
			}
			switch {
			case j.unit:
				p.unitBytes += n
			case j.kind == jobCopy:
				p.copyBytes += n
			default:
				p.literalBytes += n
			}
			if j.kind == jobCompress {
				p.recompressed++
			}
		}
		if j.raw != nil {
			p.bufs <- j.raw
		}
		if j.comp != nil {
			p.comps <- j.comp[:0]
		}
	}
}

// buf returns a free buffer, waiting for the writer to give one back.
func (p *pipe) buf() ([]byte, error) {
	select {
	case b := <-p.bufs:
		return b, nil
	case <-p.quit:
		return nil, errPipeClosed
	}
}

func (p *pipe) put(b []byte) { p.bufs <- b }

func (p *pipe) send(j *job) error {
	if j.kind == jobCompress {
		j.ready = make(chan struct{})
	}
	select {
	case p.order <- j:
	case <-p.quit:
		if j.raw != nil {
			p.bufs <- j.raw
		}
		return errPipeClosed
	}
	if j.kind == jobCompress {
		p.work <- j // workers never stop before close(p.work)
	}
	return nil
}

// close stops the pipe and returns the writer's error.
func (p *pipe) close() error {
	close(p.order)
	close(p.work)
	<-p.wdone
	<-p.cdone
	return p.werr
}
