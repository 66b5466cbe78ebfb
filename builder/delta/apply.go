package delta

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/klauspost/compress/zstd"
)

// Apply reads the bundle and writes the new image to w sequentially,
// reading the old image at random. It checks old's size and sha256 against
// the bundle's base before writing anything (ErrWrongBase), and the
// result's size and sha256 against the bundle's target at the end. Memory
// is bounded by MaxMemory whatever the image size. On error, w holds a
// partial image that the caller must not use.
func Apply(ctx context.Context, w io.Writer, old io.ReaderAt, oldSize int64, bundle io.Reader) (Stats, error) {
	var st Stats
	cr := &countReader{r: bundle}
	h, err := ReadHeader(cr)
	if err != nil {
		return st, err
	}
	if h.BaseSize != oldSize {
		return st, fmt.Errorf("delta: %w: expected %d bytes, got %d", ErrWrongBase, h.BaseSize, oldSize)
	}
	var c *blockCompressor
	if h.Compressor != "" {
		if h.Compressor != compressorName {
			return st, fmt.Errorf("delta: bundle needs zstd %q to re-compress blocks, this build has %q", h.Compressor, compressorName)
		}
		if c, err = newBlockCompressor(h.Level); err != nil {
			return st, fmt.Errorf("delta: creating compressor: %w", err)
		}
		defer c.close()
	}
	hs := sha256.New()
	if _, err := io.Copy(hs, &ctxReader{ctx: ctx, r: io.NewSectionReader(old, 0, oldSize)}); err != nil {
		return st, fmt.Errorf("delta: reading the old image: %w", err)
	}
	if got := [32]byte(hs.Sum(nil)); got != h.BaseSHA256 {
		return st, fmt.Errorf("delta: %w: expected sha256 %s, got %s", ErrWrongBase, hex.EncodeToString(h.BaseSHA256[:]), hex.EncodeToString(got[:]))
	}

	zr, err := zstd.NewReader(cr, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(bodyWindow), zstd.WithDecoderMaxMemory(1<<40))
	if err != nil {
		return st, fmt.Errorf("delta: body: %w", err)
	}
	defer zr.Close()
	pc, err := newPatchDecoder()
	if err != nil {
		return st, fmt.Errorf("delta: creating patch decoder: %w", err)
	}
	a := &applier{
		ctx: ctx, h: h, old: old, oldSize: oldSize, c: c, pc: pc, st: &st,
		in:  &opReader{r: bufio.NewReaderSize(zr, 64<<10)},
		out: &hashWriter{w: w, h: sha256.New()},
	}
	if err := a.run(); err != nil {
		return st, err
	}
	st.BundleBytes = cr.n
	st.TargetBytes = a.out.n
	if a.out.n != h.TargetSize {
		return st, fmt.Errorf("delta: result: expected %d bytes, got %d", h.TargetSize, a.out.n)
	}
	if got := [32]byte(a.out.h.Sum(nil)); got != h.TargetSHA256 {
		return st, fmt.Errorf("delta: result: expected sha256 %s, got %s (corrupt bundle)", hex.EncodeToString(h.TargetSHA256[:]), hex.EncodeToString(got[:]))
	}
	return st, nil
}

type applier struct {
	ctx     context.Context
	h       Header
	old     io.ReaderAt
	oldSize int64
	c       *blockCompressor
	pc      *patchCodec
	in      *opReader
	out     *hashWriter
	st      *Stats

	buf                  []byte // copy buffer
	dict, content, patch []byte
	stored, raw, compBuf []byte
}

func (a *applier) room() uint64 { return uint64(a.h.TargetSize - a.out.n) }

func (a *applier) run() error {
	a.buf = make([]byte, 256<<10)
	for {
		if err := a.ctx.Err(); err != nil {
			return err
		}
		op, err := a.in.byte("operation")
		if err != nil {
			return err
		}
		switch op {
		case opEnd:
			// The body must end here.
			if _, err := a.in.r.ReadByte(); !errors.Is(err, io.EOF) {
				if err == nil {
					return errors.New("delta bundle: bytes after the end operation")
				}
				return fmt.Errorf("delta bundle: %w", err)
			}
			return nil
		case opCopy:
			off, err := a.in.uvarint("copy offset", uint64(a.oldSize))
			if err != nil {
				return err
			}
			n, err := a.in.uvarint("copy length", min(uint64(a.oldSize)-off, a.room()))
			if err != nil {
				return err
			}
			if err := a.copyOld(int64(off), int64(n)); err != nil {
				return err
			}
			a.st.CopyBytes += int64(n)
		case opData:
			n, err := a.in.uvarint("literal length", a.room())
			if err != nil {
				return err
			}
			got, err := io.CopyBuffer(a.out, io.LimitReader(a.in.r, int64(n)), a.buf)
			if err != nil {
				return fmt.Errorf("delta: writing literal bytes: %w", err)
			}
			if got != int64(n) {
				return fmt.Errorf("delta bundle: reading literal bytes: %w", truncated(io.ErrUnexpectedEOF))
			}
			a.st.LiteralBytes += int64(n)
		case opUnit:
			if err := a.unit(); err != nil {
				return err
			}
		default:
			return fmt.Errorf("delta bundle: operation: expected 0..3, got %d (corrupt bundle)", op)
		}
	}
}

func (a *applier) copyOld(off, n int64) error {
	if _, err := io.CopyBuffer(a.out, io.NewSectionReader(a.old, off, n), a.buf); err != nil {
		return fmt.Errorf("delta: copying %d bytes at %d of the old image: %w", n, off, err)
	}
	return nil
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

func (a *applier) unit() error {
	in := a.in
	nsrc, err := in.uvarint("source count", maxUnit)
	if err != nil {
		return err
	}
	a.dict = a.dict[:0]
	bs := uint64(maxBlock)
	for range nsrc {
		off, err := in.uvarint("source offset", uint64(a.oldSize))
		if err != nil {
			return err
		}
		stored, err := in.uvarint("source stored length", min(uint64(a.oldSize)-off, bs))
		if err != nil {
			return err
		}
		kind, err := in.byte("source kind")
		if err != nil {
			return err
		}
		rawLen, err := in.uvarint("source raw length", bs)
		if err != nil {
			return err
		}
		sliceOff, err := in.uvarint("source slice offset", rawLen)
		if err != nil {
			return err
		}
		n, err := in.uvarint("source slice length", min(rawLen-sliceOff, maxUnit-uint64(len(a.dict))))
		if err != nil {
			return err
		}
		var raw []byte
		switch kind {
		case srcSparse:
			a.raw = grow(a.raw, int(rawLen))
			clear(a.raw)
			raw = a.raw
		case srcRaw, srcZstd:
			a.stored = grow(a.stored, int(stored))
			if _, err := a.old.ReadAt(a.stored, int64(off)); err != nil {
				return fmt.Errorf("delta: reading old block at %d: %w", off, err)
			}
			raw = a.stored
			if kind == srcZstd {
				if raw, err = a.pc.decodeBlock(a.raw[:0], a.stored, int(rawLen)); err != nil {
					return fmt.Errorf("delta: old block at %d: %w", off, err)
				}
				a.raw = raw[:0]
			}
		default:
			return fmt.Errorf("delta bundle: source kind: expected 0..2, got %d", kind)
		}
		if uint64(len(raw)) != rawLen {
			return fmt.Errorf("delta: old block at %d: expected %d bytes, got %d (wrong base?)", off, rawLen, len(raw))
		}
		a.dict = append(a.dict, raw[sliceOff:sliceOff+n]...)
	}
	contentLen, err := in.uvarint("content length", maxUnit)
	if err != nil {
		return err
	}
	patchLen, err := in.uvarint("patch length", maxUnit+maxUnit/8)
	if err != nil {
		return err
	}
	a.patch = grow(a.patch, int(patchLen))
	if _, err := io.ReadFull(in.r, a.patch); err != nil {
		return fmt.Errorf("delta bundle: reading patch: %w", truncated(err))
	}
	if cap(a.content) < int(contentLen) {
		a.content = make([]byte, 0, contentLen)
	}
	content, err := a.pc.decode(a.content[:0], a.dict, a.patch)
	if err != nil {
		return fmt.Errorf("delta bundle: patch: %w", err)
	}
	if uint64(len(content)) != contentLen {
		return fmt.Errorf("delta bundle: patch: expected %d bytes of content, got %d", contentLen, len(content))
	}
	a.content = content
	a.st.Units++
	nblk, err := in.uvarint("block count", contentLen/1+1)
	if err != nil {
		return err
	}
	pos := uint64(0)
	for range nblk {
		mode, err := in.byte("block mode")
		if err != nil {
			return err
		}
		rawLen, err := in.uvarint("block raw length", min(contentLen-pos, uint64(a.h.BlockSize)))
		if err != nil {
			return err
		}
		raw := content[pos : pos+rawLen]
		pos += rawLen
		start := a.out.n
		switch mode {
		case blkFile, blkFragment:
			if a.c == nil {
				return errors.New("delta bundle: re-compressed block in a bundle that names no compressor")
			}
			if rawLen == 0 {
				return errors.New("delta bundle: empty block")
			}
			if a.compBuf == nil {
				a.compBuf = make([]byte, 0, maxBlock+maxBlock/128+64)
			}
			out, err := recompress(a.c, a.compBuf, raw, mode == blkFragment)
			if err != nil {
				return err
			}
			if uint64(len(out)) > a.room() {
				return errors.New("delta bundle: block past the target size")
			}
			if _, err := a.out.Write(out); err != nil {
				return fmt.Errorf("delta: writing: %w", err)
			}
			a.st.Recompressed++
		case blkLiteral:
			n, err := in.uvarint("literal block length", min(uint64(maxBlock), a.room()))
			if err != nil {
				return err
			}
			if _, err := io.CopyBuffer(a.out, io.LimitReader(in.r, int64(n)), a.buf); err != nil {
				return fmt.Errorf("delta: writing: %w", err)
			}
			if uint64(a.out.n-start) != n {
				return fmt.Errorf("delta bundle: reading literal block: %w", truncated(io.ErrUnexpectedEOF))
			}
			a.st.LiteralBlks++
		case blkCopy:
			off, err := in.uvarint("block copy offset", uint64(a.oldSize))
			if err != nil {
				return err
			}
			n, err := in.uvarint("block copy length", min(uint64(a.oldSize)-off, a.room(), maxBlock))
			if err != nil {
				return err
			}
			if err := a.copyOld(int64(off), int64(n)); err != nil {
				return err
			}
		default:
			return fmt.Errorf("delta bundle: block mode: expected 0..3, got %d", mode)
		}
		a.st.UnitBytes += a.out.n - start
	}
	if pos != contentLen {
		return fmt.Errorf("delta bundle: unit blocks cover %d of %d content bytes", pos, contentLen)
	}
	return nil
}

// decodeBlock decompresses one stored zstd block of the old image.
func (p *patchCodec) decodeBlock(dst, src []byte, rawLen int) ([]byte, error) {
	if err := p.dec.ResetWithOptions(nil); err != nil {
		return nil, err
	}
	if cap(dst) < rawLen {
		dst = make([]byte, 0, rawLen)
	}
	return p.dec.DecodeAll(src, dst[:0])
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

type hashWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (hw *hashWriter) Write(p []byte) (int, error) {
	n, err := hw.w.Write(p)
	hw.h.Write(p[:n])
	hw.n += int64(n)
	return n, err
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
