package bootrecord

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
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
