package diskimg

import (
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

// fixFAT makes a FAT32 filesystem written by go-diskfs v1.9.4 reproducible
// and clean for fsck.vfat. Even with its Reproducible flag, go-diskfs stamps
// directory entries with the wall clock (or the process-wide
// SOURCE_DATE_EPOCH, which a library must not set) and leaves the volume
// serial number zero. fixFAT sets the volume serial number in the boot
// sector and its backup; walks every directory from the root, setting the
// create, access and write times of every entry (".", ".." and the volume
// label included) to modTime and pointing ".." of the root's children at
// cluster 0 as FAT32 requires; and fills in the FSInfo free-cluster count.
func fixFAT(f readerWriterAt, start, modTime int64, volumeID uint32) error {
	bs := make([]byte, 512)
	if _, err := f.ReadAt(bs, start); err != nil {
		return fmt.Errorf("reading boot sector: %w", err)
	}
	bps := int64(binary.LittleEndian.Uint16(bs[11:13]))
	spc := int64(bs[13])
	reserved := int64(binary.LittleEndian.Uint16(bs[14:16]))
	nFATs := int64(bs[16])
	perFAT := int64(binary.LittleEndian.Uint32(bs[36:40]))
	rootCluster := binary.LittleEndian.Uint32(bs[44:48])
	backup := int64(binary.LittleEndian.Uint16(bs[50:52]))
	if bps < 512 || spc == 0 || nFATs == 0 || perFAT == 0 || bs[510] != 0x55 || bs[511] != 0xAA {
		return fmt.Errorf("boot sector at byte %d is not FAT32", start)
	}

	var id [4]byte
	binary.LittleEndian.PutUint32(id[:], volumeID)
	const volumeIDOffset = 0x43 // FAT32 extended BPB
	sectors := []int64{0}
	if backup != 0 {
		sectors = append(sectors, backup)
	}
	for _, sector := range sectors {
		if _, err := f.WriteAt(id[:], start+sector*bps+volumeIDOffset); err != nil {
			return fmt.Errorf("writing volume id: %w", err)
		}
	}

	fx := fatFixer{
		f:            f,
		fatStart:     start + reserved*bps,
		dataStart:    start + (reserved+nFATs*perFAT)*bps,
		clusterBytes: bps * spc,
		maxCluster:   uint32(perFAT * bps / 4),
		visited:      map[uint32]bool{},
		rootCluster:  rootCluster,
	}
	fx.date, fx.time, fx.tenths = fatTime(modTime)
	if err := fx.dir(rootCluster, 0, 0); err != nil {
		return err
	}
	fsInfo := int64(binary.LittleEndian.Uint16(bs[48:50]))
	totalSectors := int64(binary.LittleEndian.Uint32(bs[32:36]))
	clusters := (totalSectors - reserved - nFATs*perFAT) / spc
	return fx.setFreeCount(start, bps, fsInfo, backup, clusters)
}

// setFreeCount records the number of free clusters in the FSInfo sector
// and its backup (the sector after the backup boot sector). go-diskfs
// leaves it "unknown", which fsck.vfat reports as an error.
func (fx *fatFixer) setFreeCount(start, bps, fsInfo, backup, clusters int64) error {
	if fsInfo == 0 || fsInfo == 0xFFFF {
		return nil
	}
	var free uint32
	buf := make([]byte, 64<<10)
	for first := int64(2); first < clusters+2; {
		n := min(int64(len(buf)/4), clusters+2-first)
		b := buf[:n*4]
		if _, err := fx.f.ReadAt(b, fx.fatStart+first*4); err != nil {
			return fmt.Errorf("reading FAT: %w", err)
		}
		for i := 0; i < len(b); i += 4 {
			if binary.LittleEndian.Uint32(b[i:])&0x0FFFFFFF == 0 {
				free++
			}
		}
		first += n
	}
	sectors := []int64{fsInfo}
	if backup != 0 {
		sectors = append(sectors, backup+fsInfo)
	}
	var v [4]byte
	binary.LittleEndian.PutUint32(v[:], free)
	for _, s := range sectors {
		sig := make([]byte, 4)
		if _, err := fx.f.ReadAt(sig, start+s*bps); err != nil {
			return fmt.Errorf("reading FSInfo sector: %w", err)
		}
		if binary.LittleEndian.Uint32(sig) != 0x41615252 {
			return fmt.Errorf("FSInfo sector %d has no signature", s)
		}
		if _, err := fx.f.WriteAt(v[:], start+s*bps+488); err != nil {
			return fmt.Errorf("writing FSInfo sector: %w", err)
		}
	}
	return nil
}

type readerWriterAt interface {
	io.ReaderAt
	io.WriterAt
}

type fatFixer struct {
	f                   readerWriterAt
	fatStart, dataStart int64
	clusterBytes        int64
	maxCluster          uint32
	visited             map[uint32]bool
	rootCluster         uint32
	date, time          uint16
	tenths              byte
}

// fatTime encodes t (UTC) as a FAT date, time and 10 ms creation remainder.
func fatTime(t int64) (date, tm uint16, tenths byte) {
	u := time.Unix(t, 0).UTC()
	date = uint16((u.Year()-1980)<<9 | int(u.Month())<<5 | u.Day())
	tm = uint16(u.Hour()<<11 | u.Minute()<<5 | u.Second()/2)
	return date, tm, byte(u.Second() % 2 * 100)
}

func (fx *fatFixer) next(c uint32) (uint32, error) {
	var b [4]byte
	if _, err := fx.f.ReadAt(b[:], fx.fatStart+int64(c)*4); err != nil {
		return 0, fmt.Errorf("reading FAT entry %d: %w", c, err)
	}
	return binary.LittleEndian.Uint32(b[:]) & 0x0FFFFFFF, nil
}

// dir fixes the entries of the directory starting at cluster and recurses
// into its subdirectories. parent is the cluster that the ".." entry must
// hold: the parent directory's first cluster, or 0 for the root (go-diskfs
// writes the root's cluster there, which fsck.vfat rejects).
func (fx *fatFixer) dir(cluster, parent uint32, depth int) error {
	if depth > 64 {
		return fmt.Errorf("directories nested deeper than 64")
	}
	buf := make([]byte, fx.clusterBytes)
	for c := cluster; c >= 2 && c < 0x0FFFFFF8; {
		if c > fx.maxCluster || fx.visited[c] {
			return fmt.Errorf("bad cluster chain at cluster %d", c)
		}
		fx.visited[c] = true
		off := fx.dataStart + int64(c-2)*fx.clusterBytes
		if _, err := fx.f.ReadAt(buf, off); err != nil {
			return fmt.Errorf("reading directory cluster %d: %w", c, err)
		}
		var subdirs []uint32
		end := false
		for i := 0; i+32 <= len(buf); i += 32 {
			e := buf[i : i+32]
			if e[0] == 0x00 {
				end = true
				break
			}
			if e[0] == 0xE5 || e[11] == 0x0F { // deleted, long-name part
				continue
			}
			e[13] = fx.tenths
			binary.LittleEndian.PutUint16(e[14:16], fx.time)
			binary.LittleEndian.PutUint16(e[16:18], fx.date)
			binary.LittleEndian.PutUint16(e[18:20], fx.date)
			binary.LittleEndian.PutUint16(e[22:24], fx.time)
			binary.LittleEndian.PutUint16(e[24:26], fx.date)
			name := string(e[0:11])
			if name == "..         " {
				binary.LittleEndian.PutUint16(e[20:22], uint16(parent>>16))
				binary.LittleEndian.PutUint16(e[26:28], uint16(parent))
			}
			if e[11]&0x10 != 0 && name != ".          " && name != "..         " {
				subdirs = append(subdirs, uint32(binary.LittleEndian.Uint16(e[20:22]))<<16|uint32(binary.LittleEndian.Uint16(e[26:28])))
			}
		}
		if _, err := fx.f.WriteAt(buf, off); err != nil {
			return fmt.Errorf("writing directory cluster %d: %w", c, err)
		}
		for _, sub := range subdirs {
			self := cluster
			if cluster == fx.rootCluster {
				self = 0
			}
			if err := fx.dir(sub, self, depth+1); err != nil {
				return err
			}
		}
		if end {
			return nil
		}
		var err error
		if c, err = fx.next(c); err != nil {
			return err
		}
	}
	return nil
}
