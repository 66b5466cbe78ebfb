// Command delta measures Plumb's delta codec (builder/delta) on one pair of
// release images: encode time, bundle bytes, apply time, apply peak RSS and
// apply throughput, and checks that the applied image equals the new one
// byte for byte.
//
//	go run ./bench/delta -old v1/rootfs.sqfs -new v2/rootfs.sqfs
//
// The apply runs in a child process (this program re-executed with
// -apply-child) under /usr/bin/time, so that its peak RSS is its own, the
// figure /usr/bin/time -v reports as "Maximum resident set size" (as
// others.sh measures the other tools). Without /usr/bin/time in between,
// Linux's ru_maxrss of a child forked from this process counts this
// process's pages at the fork (the encoder's hundreds of MiB). APPLY_RT=1
// runs the child under chrt -f 10 (SCHED_FIFO), as others.sh does.
//
// -codec zstd measures the same way a whole-image zstd of the new image (the
// "full image" baseline, klauspost/compress at its best level) and checks
// the harness itself; -codec plumb (codec_plumb.go) is builder/delta.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/klauspost/compress/zstd"
)

// codec is the seam between the harness and what it measures: plumb's
// builder/delta, or whole-image zstd.
type codec interface {
	encode(ctx context.Context, w io.Writer, old, new io.ReaderAt, oldSize, newSize int64) error
	apply(ctx context.Context, w io.Writer, old io.ReaderAt, oldSize int64, bundle io.Reader) error
}

type options struct {
	old, new   string
	bundle     string
	codec      string
	tsv        bool
	applyChild bool
}

func main() {
	var o options
	flag.StringVar(&o.old, "old", "", "old release image (required)")
	flag.StringVar(&o.new, "new", "", "new release image (required)")
	flag.StringVar(&o.bundle, "bundle", "", "where to write the bundle (default: a temporary file, removed)")
	flag.StringVar(&o.codec, "codec", "plumb", "what to measure: plumb (builder/delta) or zstd (whole new image)")
	flag.BoolVar(&o.tsv, "tsv", false, "print one TSV line: tool, bytes, create s, apply s, apply RSS KiB")
	flag.BoolVar(&o.applyChild, "apply-child", false, "internal: apply -bundle to -old, write the image to stdout's file (the child process)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	var err error
	if o.applyChild {
		err = runApplyChild(ctx, o)
	} else {
		err = run(ctx, o)
	}
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/delta:", err)
		os.Exit(1)
	}
}

func newCodec(name string) (codec, error) {
	switch name {
	case "plumb":
		return plumbCodec()
	case "zstd":
		return zstdCodec{}, nil
	}
	return nil, fmt.Errorf("-codec: expected plumb or zstd, got %q", name)
}

// result is what the parent reports.
type result struct {
	Codec       string  `json:"codec"`
	OldBytes    int64   `json:"old_bytes"`
	NewBytes    int64   `json:"new_bytes"`
	BundleBytes int64   `json:"bundle_bytes"`
	EncodeSec   float64 `json:"encode_s"`
	ApplySec    float64 `json:"apply_s"` // Apply into the file, in the child, without fsync
	ApplyCPU    float64 `json:"apply_cpu_s"`
	SyncSec     float64 `json:"sync_s"` // the fsync after it
	ApplyRSSKiB int64   `json:"apply_rss_kib"`
	ApplyMBps   float64 `json:"apply_mb_s"` // new image bytes / ApplySec, MB = 1e6 bytes
}

// childReport is what the child prints on stdout (JSON, one line).
type childReport struct {
	ApplySec float64 `json:"apply_s"`
	ApplyCPU float64 `json:"apply_cpu_s"` // user+sys of the child during Apply
	SyncSec  float64 `json:"sync_s"`
}

func run(ctx context.Context, o options) error {
	if o.old == "" || o.new == "" {
		return errors.New("-old and -new: expected two release images, got " + strconv.Quote(o.old) + " and " + strconv.Quote(o.new))
	}
	c, err := newCodec(o.codec)
	if err != nil {
		return err
	}
	oldF, oldSize, err := openSized(o.old)
	if err != nil {
		return err
	}
	defer oldF.Close()
	newF, newSize, err := openSized(o.new)
	if err != nil {
		return err
	}
	defer newF.Close()

	dir, err := os.MkdirTemp("", "plumb-bench-delta-")
	if err != nil {
		return fmt.Errorf("creating work directory: %w", err)
	}
	defer os.RemoveAll(dir)
	bundlePath := o.bundle
	if bundlePath == "" {
		bundlePath = filepath.Join(dir, "bundle")
	}

	r := result{Codec: o.codec, OldBytes: oldSize, NewBytes: newSize}
	bf, err := os.Create(bundlePath)
	if err != nil {
		return fmt.Errorf("creating bundle: %w", err)
	}
	start := time.Now()
	err = c.encode(ctx, bf, oldF, newF, oldSize, newSize)
	r.EncodeSec = time.Since(start).Seconds()
	if cerr := bf.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("encoding %s -> %s: %w", o.old, o.new, err)
	}
	st, err := os.Stat(bundlePath)
	if err != nil {
		return fmt.Errorf("reading bundle size: %w", err)
	}
	r.BundleBytes = st.Size()

	outPath := filepath.Join(dir, "applied")
	rep, rss, err := applyInChild(ctx, o, bundlePath, outPath)
	if err != nil {
		return err
	}
	r.ApplySec, r.ApplyCPU, r.SyncSec, r.ApplyRSSKiB = rep.ApplySec, rep.ApplyCPU, rep.SyncSec, rss
	if r.ApplySec > 0 {
		r.ApplyMBps = float64(newSize) / 1e6 / r.ApplySec
	}
	if err := sameFile(outPath, o.new); err != nil {
		return fmt.Errorf("checking the applied image: %w", err)
	}

	if o.tsv {
		label := "plumb delta"
		if o.codec != "plumb" {
			label = "go zstd whole image"
		}
		fmt.Printf("%s\t%d\t%.2f\t%.2f\t%d\t%.2f\n", label, r.BundleBytes, r.EncodeSec, r.ApplySec, r.ApplyRSSKiB, r.ApplyCPU)
		return nil
	}
	fmt.Printf("codec %s: old %d bytes, new %d bytes\n", r.Codec, r.OldBytes, r.NewBytes)
	fmt.Printf("  bundle      %d bytes (%.2f%% of the new image)\n", r.BundleBytes, 100*float64(r.BundleBytes)/float64(max(r.NewBytes, 1)))
	fmt.Printf("  encode      %.2f s\n", r.EncodeSec)
	fmt.Printf("  apply       %.2f s (%.0f MB/s of target image), then fsync %.2f s; %.2f s of CPU (user+sys)\n", r.ApplySec, r.ApplyMBps, r.SyncSec, r.ApplyCPU)
	fmt.Printf("  apply RSS   %d KiB peak (child process)\n", r.ApplyRSSKiB)
	fmt.Printf("  verified    applied image == %s byte for byte\n", o.new)
	return nil
}

// applyInChild re-executes this program with -apply-child and returns the
// child's timings and its peak RSS in KiB.
func applyInChild(ctx context.Context, o options, bundle, out string) (childReport, int64, error) {
	exe, err := os.Executable()
	if err != nil {
		return childReport{}, 0, fmt.Errorf("finding this program: %w", err)
	}
	timeOut := out + ".time"
	args := []string{"/usr/bin/time", "-f", "%M", "-o", timeOut,
		exe, "-apply-child", "-codec", o.codec, "-old", o.old, "-bundle", bundle, "-new", out}
	if os.Getenv("APPLY_RT") == "1" {
		// As others.sh: the apply under SCHED_FIFO, for a shared machine.
		args = append([]string{"chrt", "-f", "10"}, args...)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return childReport{}, 0, fmt.Errorf("applying in a child process (under /usr/bin/time: apt-get install time): %w", err)
	}
	var rep childReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		return childReport{}, 0, fmt.Errorf("reading the child's report %q: %w", strings.TrimSpace(stdout.String()), err)
	}
	b, err := os.ReadFile(timeOut)
	if err != nil {
		return childReport{}, 0, fmt.Errorf("reading the child's peak RSS: %w", err)
	}
	rss, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return childReport{}, 0, fmt.Errorf("reading the child's peak RSS from /usr/bin/time: expected KiB, got %q", b)
	}
	return rep, rss, nil
}

// runApplyChild applies -bundle to -old and writes the image to -new.
func runApplyChild(ctx context.Context, o options) error {
	c, err := newCodec(o.codec)
	if err != nil {
		return err
	}
	oldF, oldSize, err := openSized(o.old)
	if err != nil {
		return err
	}
	defer oldF.Close()
	bf, err := os.Open(o.bundle)
	if err != nil {
		return fmt.Errorf("opening bundle: %w", err)
	}
	defer bf.Close()
	out, err := os.Create(o.new)
	if err != nil {
		return fmt.Errorf("creating output: %w", err)
	}
	defer out.Close()
	if p := os.Getenv("PLUMB_BENCH_CPUPROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	cpu0 := cpuSeconds()
	start := time.Now()
	if err := c.apply(ctx, out, oldF, oldSize, bf); err != nil {
		return fmt.Errorf("applying %s to %s: %w", o.bundle, o.old, err)
	}
	rep := childReport{ApplySec: time.Since(start).Seconds(), ApplyCPU: cpuSeconds() - cpu0}
	start = time.Now()
	if err := out.Sync(); err != nil {
		return fmt.Errorf("syncing output: %w", err)
	}
	rep.SyncSec = time.Since(start).Seconds()
	if err := out.Close(); err != nil {
		return fmt.Errorf("closing output: %w", err)
	}
	return json.NewEncoder(os.Stdout).Encode(rep)
}

func openSized(path string) (*os.File, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("opening image: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("opening image: %w", err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("%s: expected a regular file, got %s", path, st.Mode().Type())
	}
	return f, st.Size(), nil
}

// sameFile compares two files in 1 MiB chunks and names the first
// differing offset.
func sameFile(a, b string) error {
	fa, err := os.Open(a)
	if err != nil {
		return err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return err
	}
	defer fb.Close()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	var off int64
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if !bytes.Equal(ba[:na], bb[:nb]) {
			n := min(na, nb)
			i := 0
			for i < n && ba[i] == bb[i] {
				i++
			}
			return fmt.Errorf("%s differs from %s at byte %d", a, b, off+int64(i))
		}
		off += int64(na)
		doneA := errors.Is(ea, io.EOF) || errors.Is(ea, io.ErrUnexpectedEOF)
		doneB := errors.Is(eb, io.EOF) || errors.Is(eb, io.ErrUnexpectedEOF)
		if ea != nil && !doneA {
			return ea
		}
		if eb != nil && !doneB {
			return eb
		}
		if doneA || doneB {
			return nil
		}
	}
}

// zstdCodec is the full-image baseline: the new image, zstd-compressed,
// ignoring the old one.
type zstdCodec struct{}

func (zstdCodec) encode(ctx context.Context, w io.Writer, _, new io.ReaderAt, _, newSize int64) error {
	enc, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return err
	}
	if _, err := io.Copy(enc, io.NewSectionReader(new, 0, newSize)); err != nil {
		enc.Close()
		return err
	}
	return enc.Close()
}

func (zstdCodec) apply(ctx context.Context, w io.Writer, _ io.ReaderAt, _ int64, bundle io.Reader) error {
	dec, err := zstd.NewReader(bundle, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
	if err != nil {
		return err
	}
	defer dec.Close()
	_, err = io.Copy(w, dec)
	return err
}

// cpuSeconds is this process's user+sys time so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
