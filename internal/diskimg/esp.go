package diskimg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"unicode/utf16"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat32"

	"github.com/plumb-os/plumb/format/disklayout"
	"github.com/plumb-os/plumb/internal/ctxio"
	"github.com/plumb-os/plumb/internal/fstree"
)

// espCopyBuffer is the chunk size for streaming a file into the ESP.
// go-diskfs rewrites the FAT and the parent directory on every Write call,
// so large chunks keep that overhead small; memory stays bounded by it.
const espCopyBuffer = 4 * disklayout.MiB

// espContent is the validated ESP file list: directories parents first,
// files in path order, all in fstree's clean relative form.
type espContent struct {
	dirs  []string
	files []ESPFile
}

// espTree validates the ESP file list and derives its directories.
func espTree(files []ESPFile) (espContent, error) {
	var c espContent
	seen := map[string]string{} // upper-case path -> "file" or "dir" (FAT is case-insensitive)
	for i, ef := range files {
		p, err := fstree.Clean(ef.Path)
		if err == nil && p == "." {
			err = errors.New("is the root directory")
		}
		if err == nil {
			err = checkFATPath(p)
		}
		if err != nil {
			return c, fmt.Errorf("esp[%d].path: expected a file path like /EFI/BOOT/BOOTX64.EFI, got %q: %v", i, ef.Path, err)
		}
		if ef.Source == nil {
			return c, fmt.Errorf("esp[%d] (%s): source is nil", i, ef.Path)
		}
		if ef.Size < 0 || ef.Size > 0xFFFFFFFF {
			return c, fmt.Errorf("esp[%d] (%s): size %d is outside FAT32's 0..4294967295 bytes", i, ef.Path, ef.Size)
		}
		key := strings.ToUpper(p)
		if prev, ok := seen[key]; ok {
			return c, fmt.Errorf("esp[%d].path: %q is already on the ESP as a %s (FAT names are case-insensitive)", i, ef.Path, prev)
		}
		seen[key] = "file"
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			k := strings.ToUpper(d)
			if prev, ok := seen[k]; ok {
				if prev == "file" {
					return c, fmt.Errorf("esp[%d].path: %q needs directory /%s, which is already a file", i, ef.Path, d)
				}
				break
			}
			seen[k] = "dir"
			c.dirs = append(c.dirs, d)
		}
		ef.Path = p
		c.files = append(c.files, ef)
	}
	sort.Strings(c.dirs) // parents sort before their children
	sort.Slice(c.files, func(i, j int) bool { return c.files[i].Path < c.files[j].Path })
	return c, nil
}

// checkFATPath rejects names a FAT long file name cannot hold.
func checkFATPath(p string) error {
	for _, name := range strings.Split(p, "/") {
		if len(utf16.Encode([]rune(name))) > 255 {
			return fmt.Errorf("name %q is longer than 255 characters", name)
		}
		if strings.HasSuffix(name, ".") || strings.HasSuffix(name, " ") {
			return fmt.Errorf("name %q ends in a dot or a space", name)
		}
		for _, r := range name {
			if r < 0x20 || strings.ContainsRune(`"*:<>?\|`, r) {
				return fmt.Errorf("name %q holds %q, which FAT does not allow", name, r)
			}
		}
	}
	return nil
}

// fatGeometry mirrors go-diskfs v1.9.4's FAT32 layout for a filesystem
// size: cluster size by size (as mkfs.fat), 32 reserved sectors, two FATs.
type fatGeometry struct {
	clusterBytes int64
	perFAT       int64 // sectors per FAT
	clusters     int64 // data clusters
}

func fatGeometryOf(size int64) fatGeometry {
	var clusterBytes int64
	switch {
	case size <= 260*disklayout.MiB:
		clusterBytes = 512
	case size <= 8*disklayout.GiB:
		clusterBytes = 4 << 10
	case size <= 16*disklayout.GiB:
		clusterBytes = 8 << 10
	case size <= 32*disklayout.GiB:
		clusterBytes = 16 << 10
	default:
		clusterBytes = 32 << 10
	}
	const reserved = 32
	total := size / disklayout.SectorSize
	spc := clusterBytes / disklayout.SectorSize
	denom := disklayout.SectorSize*spc + 8
	perFAT := (4*(total-reserved) + denom - 1) / denom
	return fatGeometry{clusterBytes: clusterBytes, perFAT: perFAT, clusters: (total - reserved - 2*perFAT) / spc}
}

// valid reports whether each FAT has an entry for every cluster plus the
// two reserved entries.
func (g fatGeometry) valid() bool {
	return g.perFAT*disklayout.SectorSize/4 >= g.clusters+2
}

// fatSize is the size to give go-diskfs's FAT32 Create for a partition.
// go-diskfs v1.9.4 sizes the FAT without its two reserved entries, so for
// some sizes (64 MiB among them) the last two clusters have no FAT entry
// and fsck.vfat and mtools reject the filesystem. fatSize shrinks the
// filesystem by whole sectors until the layout is valid; the few sectors
// left at the partition's end stay unused.
func fatSize(partSize int64) int64 {
	size := partSize / disklayout.SectorSize * disklayout.SectorSize
	for i := 0; i < 4096 && !fatGeometryOf(size).valid(); i++ {
		size -= disklayout.SectorSize
	}
	return size
}

func espGeometry(partSize int64) fatGeometry { return fatGeometryOf(fatSize(partSize)) }

// checkESPContent fails when the files and their directories need more
// clusters than the ESP has. It counts every name as a long file name, so
// it errs on the safe side by a few directory entries.
func checkESPContent(files []ESPFile, part disklayout.Partition) error {
	c, err := espTree(files)
	if err != nil {
		return err
	}
	g := espGeometry(part.Size)
	clustersFor := func(n int64) int64 { return max(1, (n+g.clusterBytes-1)/g.clusterBytes) }
	entries := map[string]int64{".": 32} // directory -> bytes of entries; root holds the volume label
	for _, d := range c.dirs {
		entries[d] += 2 * 32 // "." and ".."
		entries[path.Dir(d)] += nameEntryBytes(path.Base(d))
	}
	var need int64
	for _, f := range c.files {
		entries[path.Dir(f.Path)] += nameEntryBytes(path.Base(f.Path))
		need += clustersFor(f.Size)
	}
	for _, n := range entries {
		need += clustersFor(n)
	}
	if need > g.clusters {
		return fmt.Errorf("partition %s: content needs %d bytes, the partition holds %d bytes of %d-byte clusters (layout.espSize %d bytes)",
			disklayout.NameESP, need*g.clusterBytes, g.clusters*g.clusterBytes, g.clusterBytes, part.Size)
	}
	return nil
}

// nameEntryBytes is the directory space of one name: the 8.3 entry and its
// long-name entries (13 UTF-16 units each).
func nameEntryBytes(name string) int64 {
	units := int64(len(utf16.Encode([]rune(name))))
	return 32 * (1 + (units+12)/13)
}

// writeESP creates the FAT32 filesystem on part, copies the files in and
// then makes the bytes reproducible (volume ID, every directory entry time).
func writeESP(ctx context.Context, f *os.File, part disklayout.Partition, spec Spec) error {
	c, err := espTree(spec.ESP)
	if err != nil {
		return err
	}
	fs, err := fat32.Create(file.New(f, false), fatSize(part.Size), part.Start, disklayout.SectorSize, espLabel, true)
	if err != nil {
		return fmt.Errorf("creating FAT32: %w", err)
	}
	for _, d := range c.dirs {
		if err := fs.Mkdir("/" + d); err != nil {
			return fmt.Errorf("creating directory /%s: %w", d, err)
		}
	}
	buf := make([]byte, espCopyBuffer)
	for _, ef := range c.files {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := copyESPFile(ctx, fs, ef, buf); err != nil {
			return fmt.Errorf("writing /%s: %w", ef.Path, err)
		}
	}
	if err := fixFAT(f, part.Start, spec.ModTime, seedVolumeID(spec.Layout.Seed)); err != nil {
		return fmt.Errorf("setting reproducible metadata: %w", err)
	}
	return nil
}

func copyESPFile(ctx context.Context, fs *fat32.FileSystem, ef ESPFile, buf []byte) error {
	src, err := ef.Source.Open()
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := fs.OpenFile("/"+ef.Path, os.O_CREATE|os.O_RDWR|os.O_TRUNC)
	if err != nil {
		return err
	}
	defer dst.Close()
	// Hide WriterTo/ReaderFrom so that io.CopyBuffer uses buf's size.
	n, err := io.CopyBuffer(struct{ io.Writer }{dst}, ctxio.Reader(ctx, io.LimitReader(src, ef.Size+1)), buf)
	if err != nil {
		return err
	}
	if n != ef.Size {
		return fmt.Errorf("source gave %d bytes, expected size %d", n, ef.Size)
	}
	return nil
}

// WriteESP creates the FAT32 filesystem of partition part inside f (a disk
// image or a disk) and copies files in, with every time modTime and the
// volume ID derived from seed, exactly as Write does for the ESP. The
// installer writes a device's ESP with it; a Source failing (a boot file
// that does not match its digest) fails the write.
func WriteESP(ctx context.Context, f *os.File, part disklayout.Partition, seed string, files []ESPFile, modTime int64) error {
	if err := checkESPContent(files, part); err != nil {
		return err
	}
	spec := Spec{Layout: disklayout.Layout{Seed: seed}, ESP: files, ModTime: max(modTime, minModTime)}
	if err := writeESP(ctx, f, part, spec); err != nil {
		return fmt.Errorf("writing partition %s: %w", part.Name, err)
	}
	return nil
}

// WriteBootDisk writes a disk image at path holding only an ESP with files:
// the installer's USB stick image. The ESP is sized to the files plus
// room, at least MinESPSize; GUIDs derive from seed and every time is
// modTime, so the image is reproducible. On error no file is left.
func WriteBootDisk(ctx context.Context, path, seed string, files []ESPFile, modTime int64) (err error) {
	if seed == "" {
		return errors.New("boot disk: expected a seed, got an empty string")
	}
	if _, err := espTree(files); err != nil {
		return err
	}
	var content int64
	for _, ef := range files {
		content += ef.Size
	}
	espSize := disklayout.AlignUp(max(disklayout.MinESPSize, content+content/8+8*disklayout.MiB))
	parts := []disklayout.Partition{{
		Index: 1, Name: disklayout.NameESP, TypeGUID: disklayout.TypeESP,
		PartUUID: disklayout.SeedUUID(seed, "partition/"+disklayout.NameESP),
		Start:    disklayout.GPTHead, Size: espSize,
	}}
	size := disklayout.GPTHead + espSize + disklayout.GPTTail
	if err := checkESPContent(files, parts[0]); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("creating boot disk image: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	if err := f.Truncate(size); err != nil {
		return err
	}
	if err := writeGPT(f, size, seed, parts); err != nil {
		return fmt.Errorf("writing partition table: %w", err)
	}
	if err := WriteESP(ctx, f, parts[0], seed, files, modTime); err != nil {
		return err
	}
	return f.Sync()
}
