// Command squashfs compares Plumb's squashfs writer with mksquashfs on a
// host directory: time and size of each, and the ratios ours/mksquashfs.
//
//	go run ./bench/squashfs -tree DIR -level 15
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/plumb-os/plumb/builder/rootfs"
	"github.com/plumb-os/plumb/builder/squashfs"
	"github.com/plumb-os/plumb/format/blockcodec"
	"github.com/plumb-os/plumb/internal/fstree"
)

type options struct {
	tree     string
	out      string
	level    int
	block    uint
	workers  int
	onlyOurs bool
	memprof  string
	cpuprof  string
}

func main() {
	var o options
	flag.StringVar(&o.tree, "tree", "", "host directory to pack (required)")
	flag.StringVar(&o.out, "out", "", "directory for the two images (default: a temporary directory, removed)")
	flag.IntVar(&o.level, "level", 15, "zstd level")
	flag.UintVar(&o.block, "block", 128<<10, "block size in bytes")
	flag.IntVar(&o.workers, "workers", 0, "compressors for both writers (0: all cores)")
	flag.BoolVar(&o.onlyOurs, "only-ours", false, "skip mksquashfs (to measure our writer's memory alone)")
	flag.StringVar(&o.cpuprof, "cpuprofile", "", "write a CPU profile of our writer to this file")
	flag.StringVar(&o.memprof, "memprofile", "", "write a heap profile (allocations) of our writer to this file")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	if o.tree == "" {
		return fmt.Errorf("-tree: expected a host directory, got nothing")
	}
	if o.workers == 0 {
		o.workers = runtime.GOMAXPROCS(0)
	}
	if o.out == "" {
		dir, err := os.MkdirTemp("", "sqfs-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.out = dir
	}
	mk, err := exec.LookPath("mksquashfs")
	if err != nil {
		return fmt.Errorf("mksquashfs not found: apt-get install squashfs-tools")
	}

	start := time.Now()
	t := fstree.New()
	if err := rootfs.AddDir(t, o.tree, "."); err != nil {
		return err
	}
	scan := time.Since(start)

	ours := filepath.Join(o.out, "ours.sqfs")
	f, err := os.Create(ours)
	if err != nil {
		return err
	}
	if o.cpuprof != "" {
		pf, err := os.Create(o.cpuprof)
		if err != nil {
			return err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
	}
	start = time.Now()
	st, err := squashfs.Write(ctx, f, t, squashfs.Options{Level: o.level, BlockSize: uint32(o.block), Workers: o.workers})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	oursTime := time.Since(start)
	if o.cpuprof != "" {
		pprof.StopCPUProfile()
	}
	if o.memprof != "" {
		if err := writeHeapProfile(o.memprof); err != nil {
			return err
		}
	}

	fmt.Printf("tree      %s: %d paths, %d inodes, %d files, %.1f MB of file data (scan %v)\n",
		o.tree, t.Len(), st.Inodes, st.Files, float64(st.DataBytes)/1e6, scan.Round(time.Millisecond))
	fmt.Printf("settings  zstd level %d, block %d, %d workers, %s\n", o.level, o.block, o.workers, blockcodec.Compressor)
	fmt.Printf("ours      %8.2f s  %12d bytes\n", oursTime.Seconds(), st.Bytes)
	if o.onlyOurs {
		return nil
	}

	theirs := filepath.Join(o.out, "mksquashfs.sqfs")
	start = time.Now()
	cmd := exec.CommandContext(ctx, mk, o.tree, theirs, "-comp", "zstd",
		"-Xcompression-level", strconv.Itoa(o.level), "-b", strconv.FormatUint(uint64(o.block), 10),
		"-noappend", "-processors", strconv.Itoa(o.workers), "-quiet", "-no-progress")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("mksquashfs: %w", err)
	}
	theirTime := time.Since(start)
	fi, err := os.Stat(theirs)
	if err != nil {
		return err
	}

	fmt.Printf("mksquashfs%8.2f s  %12d bytes\n", theirTime.Seconds(), fi.Size())
	tr, sr := oursTime.Seconds()/theirTime.Seconds(), float64(st.Bytes)/float64(fi.Size())
	fmt.Printf("ratio     time %.2f  size %.3f\n", tr, sr)
	// Goal lines: bench/run.sh collects them into its summary table.
	fmt.Printf("goal\tsquashfs writer, level %d: time\t%.2f x mksquashfs (%.2f s vs %.2f s)\t<= 1.5 x\t%s\n",
		o.level, tr, oursTime.Seconds(), theirTime.Seconds(), metOrNot(tr <= 1.5))
	fmt.Printf("goal\tsquashfs writer, level %d: size\t%.3f x mksquashfs (%d vs %d bytes)\t<= 1.02 x\t%s\n",
		o.level, sr, st.Bytes, fi.Size(), metOrNot(sr <= 1.02))
	return nil
}

func metOrNot(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func writeHeapProfile(name string) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
