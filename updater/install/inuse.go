package install

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/plumb-os/plumb/internal/errclass"
)

// ErrInUse marks a disk the installer never writes, even with --force: a
// filesystem on it is mounted (the running root and /data among them), it
// is swap, or the kernel or another program holds it open exclusively.
var ErrInUse = errors.New("disk is in use")

// System is where InUse looks: the kernel's view of block devices and
// mounts. DefaultSystem is the running one.
type System struct {
	SysBlock  string // /sys/class/block
	Mountinfo string // /proc/self/mountinfo
	Swaps     string // /proc/swaps
}

// DefaultSystem reads the running kernel's files.
var DefaultSystem = System{SysBlock: "/sys/class/block", Mountinfo: "/proc/self/mountinfo", Swaps: "/proc/swaps"}

// InUse says why the block device at path must not be written ("" when
// nothing on it is in use). The device covers itself, its partitions, and
// what is built on them: device-mapper or md devices holding them
// (holders/) and loop devices whose backing file is one of them; any of
// those mounted (by /proc/self/mountinfo's device numbers, so whatever the
// boot path: UEFI, or a network boot with -kernel and no
// LoaderDevicePartUUID) or used as swap makes the device in use. A path
// that is not a block device (a disk image file) is never in use.
func (s System) InUse(path string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", fmt.Errorf("disk %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return "", nil
	}
	devs, err := s.blockDevices()
	if err != nil {
		return "", err
	}
	self, ok := devs.byNum[devNum(st.Rdev)]
	if !ok {
		return "", fmt.Errorf("disk %s: block device %s not in %s", path, devNum(st.Rdev), s.SysBlock)
	}
	covered := devs.covered(self)

	mounts, err := os.Open(s.Mountinfo)
	if err != nil {
		return "", fmt.Errorf("reading mounts: %w", err)
	}
	defer mounts.Close()
	var why []string
	sc := bufio.NewScanner(mounts)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT ...
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		if name, ok := devs.byNum[f[2]]; ok && covered[name] {
			why = append(why, fmt.Sprintf("%s is mounted on %s", name, unescapeMount(f[4])))
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("reading %s: %w", s.Mountinfo, err)
	}
	if b, err := os.ReadFile(s.Swaps); err == nil {
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			var sw unix.Stat_t
			if unix.Stat(unescapeMount(f[0]), &sw) == nil && sw.Mode&unix.S_IFMT == unix.S_IFBLK {
				if name, ok := devs.byNum[devNum(sw.Rdev)]; ok && covered[name] {
					why = append(why, name+" is swap")
				}
			}
		}
	}
	if len(why) > 3 {
		why = append(why[:3], fmt.Sprintf("%d more", len(why)-3))
	}
	return strings.Join(why, ", "), nil
}

// blockDevs maps the block devices of SysBlock.
type blockDevs struct {
	byNum      map[string]string   // "MAJ:MIN" -> name
	partitions map[string][]string // disk -> its partitions
	holders    map[string][]string // device -> devices built on it (holders/)
	loops      map[string][]string // device -> loop devices backed by it
}

func devNum(rdev uint64) string { return fmt.Sprintf("%d:%d", unix.Major(rdev), unix.Minor(rdev)) }

func (s System) blockDevices() (*blockDevs, error) {
	ents, err := os.ReadDir(s.SysBlock)
	if err != nil {
		return nil, fmt.Errorf("listing block devices: %w", err)
	}
	d := &blockDevs{byNum: map[string]string{}, partitions: map[string][]string{}, holders: map[string][]string{}, loops: map[string][]string{}}
	for _, e := range ents {
		name := e.Name()
		dir := filepath.Join(s.SysBlock, name)
		num, err := os.ReadFile(filepath.Join(dir, "dev"))
		if err != nil {
			continue
		}
		d.byNum[strings.TrimSpace(string(num))] = name
		if _, err := os.Stat(filepath.Join(dir, "partition")); err == nil {
			// /sys/class/block/sda1 -> .../block/sda/sda1
			if real, err := filepath.EvalSymlinks(dir); err == nil {
				disk := filepath.Base(filepath.Dir(real))
				d.partitions[disk] = append(d.partitions[disk], name)
			}
		}
		hs, _ := os.ReadDir(filepath.Join(dir, "holders"))
		for _, h := range hs {
			d.holders[name] = append(d.holders[name], h.Name())
		}
	}
	// Loop devices backed by a block device (losetup /dev/sda, or an
	// offset into it: a partition without a partition table entry).
	for _, name := range sortedNames(d.byNum) {
		b, err := os.ReadFile(filepath.Join(s.SysBlock, name, "loop", "backing_file"))
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(strings.TrimSpace(string(b)), &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
			continue
		}
		if backing, ok := d.byNum[devNum(st.Rdev)]; ok {
			d.loops[backing] = append(d.loops[backing], name)
		}
	}
	return d, nil
}

// covered is dev and everything built on it, transitively.
func (d *blockDevs) covered(dev string) map[string]bool {
	seen := map[string]bool{}
	queue := []string{dev}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		if seen[n] {
			continue
		}
		seen[n] = true
		queue = append(queue, d.partitions[n]...)
		queue = append(queue, d.holders[n]...)
		queue = append(queue, d.loops[n]...)
	}
	return seen
}

func sortedNames(byNum map[string]string) []string {
	var names []string
	for _, n := range byNum {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			var c byte
			ok := true
			for _, x := range s[i+1 : i+4] {
				if x < '0' || x > '7' {
					ok = false
					break
				}
				c = c*8 + byte(x-'0')
			}
			if ok {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// openExclusive opens the disk; a block device with O_EXCL, which the
// kernel refuses (EBUSY) while anything holds it: a mounted filesystem on
// it or on a partition (in any mount namespace), swap, device-mapper, md,
// or another exclusive opener such as a second installer.
func openExclusive(path string, mode int) (*os.File, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, fmt.Errorf("opening disk: %w", err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFBLK {
		mode |= unix.O_EXCL
	}
	f, err := os.OpenFile(path, mode, 0)
	if errors.Is(err, unix.EBUSY) {
		return nil, errclass.Errorf(ErrInUse, "disk %s is in use (the kernel refuses to open it exclusively: mounted, swap, or held by another program): refusing to overwrite it, even with --force; nothing was written", path)
	}
	if err != nil {
		return nil, fmt.Errorf("opening disk: %w", err)
	}
	return f, nil
}

// refuseInUse is InUse as the installer's refusal.
func refuseInUse(sys System, path string) error {
	inUse, err := sys.InUse(path)
	if err != nil {
		return err
	}
	if inUse != "" {
		return errclass.Errorf(ErrInUse, "disk %s is in use (%s): refusing to overwrite it, even with --force; nothing was written", path, inUse)
	}
	return nil
}
