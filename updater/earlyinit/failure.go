package earlyinit

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// BootFailureFile is where plumb-init records why a boot failed, relative
// to the data partition's root (/data on a running system). The agent
// reads it after a rollback to say why the trial did not boot.
const BootFailureFile = "plumb/boot-failure.json"

// BootFailure is the last fatal boot failure plumb-init saw.
type BootFailure struct {
	Slot           string    `json:"slot"`
	RootPARTUUID   string    `json:"root_partuuid"`
	VerityRootHash string    `json:"verity_root_hash,omitempty"`
	Reason         string    `json:"reason"`
	Time           time.Time `json:"time"`
}

// ReadBootFailure reads the record under dataDir (the data partition's
// mount point); a missing file is (nil, nil).
func ReadBootFailure(dataDir string) (*BootFailure, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, BootFailureFile))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var f BootFailure
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", BootFailureFile, err)
	}
	return &f, nil
}

// failureTarget is what fail needs to record a failure: set once the root
// and the data partition are known.
var failureTarget struct {
	bi      *BootInfo
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
	rec := BootFailure{Slot: t.bi.Slot, RootPARTUUID: t.bi.RootPARTUUID, VerityRootHash: t.bi.VerityRootHash, Reason: reason.Error(), Time: time.Now().UTC()}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	p := filepath.Join(dir, BootFailureFile)
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
