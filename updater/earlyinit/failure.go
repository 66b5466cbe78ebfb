package earlyinit

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/plumb-os/plumb/format/bootrecord"
)

// failureTarget is what fail needs to record a failure: set once the root
// and the data partition are known.
var failureTarget struct {
	bi      *bootrecord.BootInfo
	dataDev string
	mounted string // where the data partition is mounted, "" while it is not
}

// recordFailure writes the failure to the data partition, mounting it on a
// private directory if it is not mounted yet. Best effort: the boot is
// failing anyway.
func recordFailure(reason error) error {
	t := failureTarget
	if t.bi == nil || t.dataDev == "" {
		return fmt.Errorf("no data partition known yet")
	}
	dir := t.mounted
	if dir == "" {
		dir = "/plumb-failure"
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(t.dataDev, dir, "ext4", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return fmt.Errorf("mounting %s: %w", t.dataDev, err)
		}
		defer unix.Unmount(dir, 0)
	}
	rec := bootrecord.BootFailure{Slot: string(t.bi.Slot), RootPARTUUID: t.bi.RootPARTUUID, VerityRootHash: t.bi.VerityRootHash, Reason: reason.Error(), Time: time.Now().UTC()}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	p := filepath.Join(dir, bootrecord.BootFailureFile)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.Create(p + ".tmp")
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(p+".tmp", p)
	}
	unix.Sync()
	return err
}
