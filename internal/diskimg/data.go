package diskimg

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/plumb-os/plumb/format/datapart"
	"github.com/plumb-os/plumb/format/disklayout"
	"github.com/plumb-os/plumb/internal/fstree"
)

// The data partition is made by e2fsprogs rather than go-diskfs: go-diskfs
// v1.9.4's ext4 writer stamps every inode with the wall clock and gives the
// journal a random UUID, which would have to be patched inode by inode with
// their checksums. mke2fs takes the UUID and hash seed as flags and, with
// E2FSPROGS_FAKE_TIME, uses a fixed time for the superblock and every inode
// (debugfs too), which makes its output byte-reproducible.

const dataBlockSize = 4096

// mke2fsConfig pins mke2fs's defaults so that the filesystem does not
// depend on the host's /etc/mke2fs.conf. The features are Debian 12's ext4
// defaults, all supported by the 6.1 kernel.
const mke2fsConfig = `[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384

[fs_types]
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
`

// e2fsprogs holds the paths of the tools used for the data partition.
type e2fsprogs struct {
	mke2fs, debugfs string
}

func findE2fsprogs() (e2fsprogs, error) {
	var t e2fsprogs
	for _, tool := range []struct {
		name string
		dst  *string
	}{{"mke2fs", &t.mke2fs}, {"debugfs", &t.debugfs}} {
		p, err := lookTool(tool.name)
		if err != nil {
			return t, fmt.Errorf("%s not found: apt-get install e2fsprogs", tool.name)
		}
		*tool.dst = p
	}
	return t, nil
}

// lookTool finds name in PATH or in the sbin directories, which a non-root
// PATH often lacks.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// dataDirs validates the data directories and returns them with their
// parents, sorted so that parents come first.
func dataDirs(dirs []string) ([]string, error) {
	set := map[string]bool{}
	for i, d := range dirs {
		c, err := fstree.Clean(d)
		if err == nil && c == "." {
			err = errors.New("is the root directory")
		}
		if err == nil {
			for _, r := range c {
				if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._+@-", r)) {
					err = fmt.Errorf("holds %q; allowed are letters, digits and . _ + @ -", r)
					break
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("dataDirs[%d]: expected a relative directory like \"plumb/tuf\", got %q: %v", i, d, err)
		}
		for ; c != "."; c = path.Dir(c) {
			set[c] = true
		}
	}
	out := make([]string, 0, len(set))
	for d := range set {
		out = append(out, d)
	}
	// Sorting by path puts every parent before its children.
	sort.Strings(out)
	return out, nil
}

// WriteData writes the data partition part into the image file at
// imagePath as Build does (writeData). The device side's tests use it to
// start from the builder's own bytes, not a copy of the format.
func WriteData(ctx context.Context, imagePath string, part disklayout.Partition, spec Spec) error {
	tools, err := findE2fsprogs()
	if err != nil {
		return err
	}
	return writeData(ctx, tools, imagePath, part, spec)
}

// writeData makes the data partition: the ext4 filesystem, or with
// spec.DataSealed the unprovisioned partition of format/datapart (a marker
// and the filesystem, gzip-compressed, that the device's first boot
// encrypts with a key sealed to its TPM).
func writeData(ctx context.Context, tools e2fsprogs, imagePath string, part disklayout.Partition, spec Spec) error {
	if !spec.DataSealed {
		return writeExt4(ctx, tools, imagePath, part, spec)
	}
	tmp, err := os.MkdirTemp("", "plumb-diskimg-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	fsPath := filepath.Join(tmp, "data.ext4")
	fsSize := part.Size - datapart.SegmentOffset
	f, err := os.Create(fsPath)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(fsSize); err != nil {
		return err
	}
	if err := writeExt4(ctx, tools, fsPath, disklayout.Partition{Name: part.Name, Start: 0, Size: fsSize}, spec); err != nil {
		return err
	}
	raw, err := io.ReadAll(io.NewSectionReader(f, 0, fsSize))
	if err != nil {
		return err
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return err
	}
	if _, err := zw.Write(raw); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	comp := gz.Bytes()
	if len(comp) > datapart.MaxImage {
		return fmt.Errorf("sealed data partition: the empty filesystem compresses to %d bytes, more than the %d the layout holds (a smaller data partition?)", len(comp), datapart.MaxImage)
	}
	sum := sha256.Sum256(comp)
	marker, err := datapart.Marker{Compressed: int64(len(comp)), SHA256: hex.EncodeToString(sum[:]), Size: fsSize}.Encode()
	if err != nil {
		return err
	}
	img, err := os.OpenFile(imagePath, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer img.Close()
	if _, err := img.WriteAt(marker, part.Start); err != nil {
		return err
	}
	if _, err := img.WriteAt(comp, part.Start+datapart.ImageOffset); err != nil {
		return err
	}
	return img.Close()
}

// writeExt4 makes the ext4 data filesystem inside the image at imagePath
// and creates spec.DataDirs on it.
func writeExt4(ctx context.Context, tools e2fsprogs, imagePath string, part disklayout.Partition, spec Spec) error {
	if strings.Contains(imagePath, "?") {
		return fmt.Errorf("disk image path %q: contains '?', which e2fsprogs reads as an option separator", imagePath)
	}
	dirs, err := dataDirs(spec.DataDirs)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "plumb-diskimg-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	conf := filepath.Join(tmp, "mke2fs.conf")
	if err := os.WriteFile(conf, []byte(mke2fsConfig), 0o644); err != nil {
		return err
	}
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"LC_ALL=C",
		"MKE2FS_CONFIG=" + conf,
		"E2FSPROGS_FAKE_TIME=" + strconv.FormatInt(spec.ModTime, 10),
	}
	seed := spec.Layout.Seed
	offset := strconv.FormatInt(part.Start, 10)
	if _, err := run(ctx, env, tools.mke2fs,
		"-q", "-F", "-t", "ext4", "-T", "default",
		"-b", strconv.Itoa(dataBlockSize),
		"-L", dataLabel,
		"-U", disklayout.SeedUUID(seed, "ext4/uuid"),
		"-E", "offset="+offset+",hash_seed="+disklayout.SeedUUID(seed, "ext4/hash-seed")+",root_owner=0:0",
		imagePath, strconv.FormatInt(part.Size/dataBlockSize, 10),
	); err != nil {
		return err
	}
	if len(dirs) == 0 {
		return nil
	}
	var script strings.Builder
	for _, d := range dirs {
		fmt.Fprintf(&script, "mkdir %s\n", d)
	}
	scriptPath := filepath.Join(tmp, "debugfs.cmds")
	if err := os.WriteFile(scriptPath, []byte(script.String()), 0o644); err != nil {
		return err
	}
	// debugfs exits 0 when a command fails; its errors are on stderr, after
	// its version banner.
	stderr, err := run(ctx, env, tools.debugfs, "-w", "-f", scriptPath, imagePath+"?offset="+offset)
	if err != nil {
		return err
	}
	for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if line != "" && !strings.HasPrefix(line, "debugfs ") {
			return fmt.Errorf("creating data directories: debugfs: %s", line)
		}
	}
	return nil
}

// run runs a tool and returns its stderr; a failure's error holds it.
func run(ctx context.Context, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		return msg, fmt.Errorf("%s: %w: %s", filepath.Base(name), err, strings.ReplaceAll(msg, "\n", "; "))
	}
	return stderr.String(), nil
}
