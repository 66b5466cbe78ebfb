package squashfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"golang.org/x/sync/errgroup"

	"github.com/plumb-os/plumb/format/blockcodec"
)

// job is one data block or fragment block on its way through the pipeline.
type job struct {
	raw   []byte // uncompressed block (a pool buffer)
	out   []byte // bytes to write: compressed, or raw
	size  uint32 // size field: stored length, dataUncompressed flag, 0 = sparse
	ready chan struct{}

	ino   *inode // data block of this file, or nil for a fragment block
	block int    // index of the block in the file
}

// writeData writes the contents of all regular files to out in walk order,
// each distinct content once.
func (b *builder) writeData(ctx context.Context, out *posWriter) error {
	if err := b.findDuplicates(ctx); err != nil {
		return err
	}
	if err := b.pipeline(ctx, out); err != nil {
		return err
	}
	for _, in := range b.files {
		if d := in.dupOf; d != nil {
			in.start, in.blocks, in.sparse = d.start, d.blocks, d.sparse
		}
	}
	return nil
}

// findDuplicates marks files of a block or more whose content equals an
// earlier file's. Only files whose size another file shares are read
// (hashed by opts.Workers goroutines), so a tree without duplicates costs
// no extra reading beyond the few same-size files.
func (b *builder) findDuplicates(ctx context.Context) error {
	bs := int64(b.opts.BlockSize)
	bySize := map[int64]int{}
	for _, in := range b.files {
		if in.node.Size >= bs {
			bySize[in.node.Size]++
		}
	}
	var cand []*inode
	for _, in := range b.files {
		if in.node.Size >= bs && bySize[in.node.Size] > 1 {
			cand = append(cand, in)
		}
	}
	if len(cand) == 0 {
		return nil
	}
	sums := make([][sha256.Size]byte, len(cand))
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(b.opts.Workers)
	for i, in := range cand {
		g.Go(func() error {
			if err := ctx.Err(); err != nil {
				return err
			}
			r, err := in.node.Source.Open()
			if err != nil {
				return fmt.Errorf("squashfs: opening %s: %w", in.path, err)
			}
			defer r.Close()
			h := sha256.New()
			n, err := io.Copy(h, &ctxReader{ctx: ctx, r: r})
			if err != nil {
				return fmt.Errorf("squashfs: reading %s: %w", in.path, err)
			}
			if n != in.node.Size {
				return fmt.Errorf("squashfs: reading %s: file has %d bytes, its recorded size is %d", in.path, n, in.node.Size)
			}
			h.Sum(sums[i][:0])
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	type key struct {
		size int64
		sum  [sha256.Size]byte
	}
	first := map[key]*inode{}
	for i, in := range cand {
		k := key{in.node.Size, sums[i]}
		if d := first[k]; d != nil {
			in.dupOf = d
			b.dedup = true
		} else {
			first[k] = in
		}
	}
	return nil
}

// ctxReader stops a copy when its context is done.
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

// pipeline streams the files that are not duplicates to out: a reader
// goroutine cuts them into blocks (and packs small files into fragment
// blocks), opts.Workers goroutines compress, and this goroutine writes the
// results in order. At most inFlight blocks exist at a time.
func (b *builder) pipeline(ctx context.Context, out *posWriter) error {
	bs := int(b.opts.BlockSize)
	inFlight := 2*b.opts.Workers + 2
	pool := newBufPool(bs, inFlight+b.opts.Workers+2)
	outPool := newBufPool(bs+bs/128+64, inFlight+b.opts.Workers+2) // room for zstd's worst case
	order := make(chan *job, inFlight)
	work := make(chan *job, inFlight)

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(order)
		defer close(work)
		return b.readFiles(ctx, pool, order, work)
	})
	for range b.opts.Workers {
		c, err := blockcodec.NewBlockCompressor(b.opts.Level)
		if err != nil {
			return fmt.Errorf("squashfs: creating zstd compressor: %w", err)
		}
		g.Go(func() error {
			defer c.Close()
			zero := make([]byte, bs)
			for j := range work {
				if err := compressBlock(c, j, zero, outPool); err != nil {
					return err // cancels the group: the writer stops waiting
				}
				close(j.ready)
			}
			return nil
		})
	}
	g.Go(func() error {
		for j := range order {
			select {
			case <-j.ready:
			case <-ctx.Done():
				return ctx.Err()
			}
			if j.ino != nil {
				if j.block == 0 {
					j.ino.start = uint64(out.pos)
				}
				j.ino.blocks[j.block] = j.size
				if j.size == 0 {
					j.ino.sparse += uint64(len(j.raw))
				}
			} else {
				b.fragments = append(b.fragments, fragment{start: uint64(out.pos), size: j.size})
			}
			if _, err := out.Write(j.out); err != nil {
				return fmt.Errorf("squashfs: writing data: %w", err)
			}
			if len(j.out) > 0 && &j.out[0] != &j.raw[0] {
				outPool.put(j.out)
			}
			pool.put(j.raw)
		}
		return nil
	})
	return g.Wait()
}

// compressBlock fills j.out and j.size. A file block of zeros becomes a
// sparse block (size 0, no bytes); a block that zstd cannot shrink is
// stored as is.
func compressBlock(c *blockcodec.BlockCompressor, j *job, zero []byte, outPool *bufPool) error {
	if j.ino != nil && bytes.Equal(j.raw, zero[:len(j.raw)]) {
		j.out, j.size = nil, 0
		return nil
	}
	out, err := c.Compress(outPool.get()[:0], j.raw)
	if err != nil {
		return fmt.Errorf("squashfs: compressing: %w", err)
	}
	if len(out) >= len(j.raw) {
		outPool.put(out)
		j.out, j.size = j.raw, uint32(len(j.raw))|dataUncompressed
		return nil
	}
	j.out, j.size = out, uint32(len(out))
	return nil
}

// readFiles is the pipeline's reader: it sends every block, in order, to
// order (for the writer) and work (for the compressors).
func (b *builder) readFiles(ctx context.Context, pool *bufPool, order, work chan<- *job) error {
	bs := int64(b.opts.BlockSize)
	send := func(j *job) error {
		j.ready = make(chan struct{})
		select {
		case order <- j:
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case work <- j:
		case <-ctx.Done():
			return ctx.Err()
		}
		return nil
	}
	frag := pool.get()[:0]
	seen := map[[sha256.Size]byte][2]uint32{} // small-file content -> fragment, offset
	small := make([]byte, bs)
	for _, in := range b.files {
		if err := ctx.Err(); err != nil {
			return err
		}
		size := in.node.Size
		if size == 0 || in.dupOf != nil {
			continue
		}
		r, err := in.node.Source.Open()
		if err != nil {
			return fmt.Errorf("squashfs: opening %s: %w", in.path, err)
		}
		if size < bs {
			// A small file goes into a fragment block, once per content.
			err = readExactly(r, small[:size])
			r.Close()
			if err != nil {
				return fmt.Errorf("squashfs: reading %s: %w", in.path, err)
			}
			sum := sha256.Sum256(small[:size])
			if loc, ok := seen[sum]; ok {
				in.frag, in.fragOff = loc[0], loc[1]
				b.dedup = true
				continue
			}
			if int64(len(frag))+size > bs {
				if err := send(&job{raw: frag}); err != nil {
					return err
				}
				frag = pool.get()[:0]
				b.fragCount++
			}
			in.frag, in.fragOff = b.fragCount, uint32(len(frag))
			seen[sum] = [2]uint32{in.frag, in.fragOff}
			frag = append(frag, small[:size]...)
			continue
		}
		// A file of a block or more: full blocks and a short last block,
		// never a fragment.
		n := (size + bs - 1) / bs
		in.blocks = make([]uint32, n)
		for i := range n {
			if err := ctx.Err(); err != nil {
				r.Close()
				return err
			}
			l := min(bs, size-i*bs)
			buf := pool.get()[:l]
			var err error
			if i == n-1 {
				err = readExactly(r, buf)
			} else {
				_, err = io.ReadFull(r, buf)
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
					err = fmt.Errorf("file is shorter than its recorded size %d", size)
				}
			}
			if err != nil {
				r.Close()
				return fmt.Errorf("squashfs: reading %s: %w", in.path, err)
			}
			if err := send(&job{raw: buf, ino: in, block: int(i)}); err != nil {
				r.Close()
				return err
			}
		}
		r.Close()
	}
	if len(frag) > 0 {
		if err := send(&job{raw: frag}); err != nil {
			return err
		}
		b.fragCount++
	}
	return nil
}

// readExactly fills buf and checks that r then ends.
func readExactly(r io.Reader, buf []byte) error {
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("file is shorter than its recorded size")
		}
		return err
	}
	var one [1]byte
	n, err := io.ReadFull(r, one[:])
	if n > 0 {
		return fmt.Errorf("file is longer than its recorded size")
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// bufPool recycles block buffers; it keeps at most cap(free) of them.
type bufPool struct {
	size int
	free chan []byte
}

func newBufPool(size, keep int) *bufPool {
	return &bufPool{size: size, free: make(chan []byte, keep)}
}

func (p *bufPool) get() []byte {
	select {
	case b := <-p.free:
		return b
	default:
		return make([]byte, p.size)
	}
}

func (p *bufPool) put(b []byte) {
	select {
	case p.free <- b[:cap(b)]:
	default:
	}
}
