package plumb

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/plumb-os/plumb/builder"
	"github.com/plumb-os/plumb/builder/delta"
	wire "github.com/plumb-os/plumb/format/delta"
	"github.com/plumb-os/plumb/internal/atomicfile"
	"github.com/plumb-os/plumb/internal/cli"
	"github.com/plumb-os/plumb/internal/iox"
)

type deltaOptions struct {
	old, new     string
	out          string
	noRecompress bool
	jsonOut      bool
}

func newDeltaCmd(e *cli.Env) *cobra.Command {
	var o deltaOptions
	cmd := &cobra.Command{
		Use:   "delta OLD NEW -o FILE",
		Short: "Write the delta bundle that turns one release's root image into another's",
		Long: `Delta writes a bundle (format: format/delta/FORMAT.md) that turns the root
image OLD into NEW. OLD and NEW are rootfs.sqfs files or plumb build output
directories. FILE appears only when the whole bundle is written; a failed
run leaves it as it was. plumb publish makes the same bundles itself
(--deltas).`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.old, o.new = args[0], args[1]
			return runDelta(cmd.Context(), e, o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.out, "output", "o", "", "bundle file to write (required)")
	f.BoolVar(&o.noRecompress, "no-recompress", false, "ship changed blocks as they are: any plumbd can apply it, whatever zstd it links (larger)")
	f.BoolVar(&o.jsonOut, "json", false, "print the bundle's figures as JSON")
	cmd.MarkFlagRequired("output")
	return cmd
}

// deltaResult is what plumb delta prints.
type deltaResult struct {
	Old         string  `json:"old"`
	New         string  `json:"new"`
	Output      string  `json:"output"`
	OldBytes    int64   `json:"old_bytes"`
	NewBytes    int64   `json:"new_bytes"`
	BundleBytes int64   `json:"bundle_bytes"`
	Seconds     float64 `json:"seconds"`
	wire.Stats
}

func runDelta(ctx context.Context, e *cli.Env, o deltaOptions) error {
	oldPath, err := rootImage(o.old)
	if err != nil {
		return err
	}
	newPath, err := rootImage(o.new)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(o.out); err == nil && fi.IsDir() {
		return cli.BadInput(fmt.Errorf("-o %s: expected a file name, got a directory", o.out))
	}
	oldF, err := os.Open(oldPath)
	if err != nil {
		return cli.BadInput(err)
	}
	defer oldF.Close()
	newF, err := os.Open(newPath)
	if err != nil {
		return cli.BadInput(err)
	}
	defer newF.Close()
	oldSize, err := fileSize(oldF)
	if err != nil {
		return err
	}
	newSize, err := fileSize(newF)
	if err != nil {
		return err
	}

	out, err := atomicfile.Create(o.out, 0o644)
	if err != nil {
		return err
	}
	defer out.Close() // removes the temp file unless committed
	start := time.Now()
	ew := &iox.ErrWriter{W: out}
	bw := bufio.NewWriterSize(ew, 1<<20)
	st, err := delta.Encode(ctx, bw, oldF, newF, oldSize, newSize, delta.Options{NoRecompress: o.noRecompress, Log: e.Log})
	if err != nil {
		err = fmt.Errorf("%s -> %s: %w", oldPath, newPath, err)
		if ew.Err != nil || errors.Is(err, context.Canceled) {
			return err
		}
		// Not the output, not a cancel: the images are what is wrong.
		return cli.BadInput(err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing %s: %w", o.out, err)
	}
	if err := out.Commit(); err != nil {
		return err
	}
	res := deltaResult{
		Old: oldPath, New: newPath, Output: o.out, OldBytes: oldSize, NewBytes: newSize,
		BundleBytes: st.BundleBytes, Seconds: time.Since(start).Seconds(), Stats: st,
	}
	if o.jsonOut {
		return cli.PrintJSON(e.Stdout, res)
	}
	fmt.Fprintf(e.Stdout, "%s: %d bytes (%.2f%% of the new image's %d bytes) in %.1fs\n",
		o.out, st.BundleBytes, 100*float64(st.BundleBytes)/float64(max(newSize, 1)), newSize, res.Seconds)
	fmt.Fprintf(e.Stdout, "  image bytes: %d copied from the old image, %d literal, %d re-compressed from %d patched contents (%d files matched)\n",
		st.CopyBytes, st.LiteralBytes, st.UnitBytes, st.Units, st.MatchedFiles)
	fmt.Fprintf(e.Stdout, "  blocks: %d re-compressed by the device, %d shipped literal\n", st.Recompressed, st.LiteralBlks)
	return nil
}

// rootImage resolves OLD or NEW: a build directory means its rootfs.sqfs.
// It checks the squashfs superblock's magic and compressor, so that a
// wrong file is one line of bad input rather than a decoder error.
func rootImage(arg string) (string, error) {
	fi, err := os.Stat(arg)
	if err != nil {
		return "", cli.BadInput(fmt.Errorf("%s: expected a rootfs.sqfs or a plumb build directory: %w", arg, errors.Unwrap(err)))
	}
	p := arg
	if fi.IsDir() {
		p = filepath.Join(arg, builder.RootfsFile)
		if _, err := os.Stat(p); err != nil {
			return "", cli.BadInput(fmt.Errorf("%s: expected a plumb build directory holding %s, got none", arg, builder.RootfsFile))
		}
	}
	f, err := os.Open(p)
	if err != nil {
		return "", cli.BadInput(err)
	}
	defer f.Close()
	var sb [24]byte
	if _, err := io.ReadFull(f, sb[:]); err != nil {
		return "", cli.BadInput(fmt.Errorf("%s: expected a squashfs root image, got %s", p, shortOf(err)))
	}
	if m := binary.LittleEndian.Uint32(sb[0:]); m != 0x73717368 {
		return "", cli.BadInput(fmt.Errorf("%s: squashfs magic: expected \"hsqs\", got %q", p, sb[:4]))
	}
	if c := binary.LittleEndian.Uint16(sb[20:]); c != 6 {
		return "", cli.BadInput(fmt.Errorf("%s: squashfs compressor: expected 6 (zstd, as plumb build writes), got %d", p, c))
	}
	return p, nil
}

func shortOf(err error) string {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "a file shorter than a superblock"
	}
	return err.Error()
}

func fileSize(f *os.File) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if !fi.Mode().IsRegular() {
		return 0, cli.BadInput(fmt.Errorf("%s: expected a regular file", f.Name()))
	}
	return fi.Size(), nil
}
