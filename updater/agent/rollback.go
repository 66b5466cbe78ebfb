package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/plumb-os/plumb/format/bootrecord"
	"github.com/plumb-os/plumb/internal/atomicfile"
)

// RollbackFile (beside the state file) explains the last rollback after a
// failed trial boot; plumbd status shows it. A file of its own, so that
// the state file's format (read strictly, also by older agents after a
// rollback) does not change.
const RollbackFile = "rollback.json"

// Rollback is why the last trial boot did not come up.
type Rollback struct {
	Version string                  `json:"version"`
	Slot    string                  `json:"slot"`
	Reason  string                  `json:"reason"` // "boot failed"
	Detail  string                  `json:"detail"` // what plumb-init recorded, or why nothing was
	Time    time.Time               `json:"time"`   // when the agent noticed
	Init    *bootrecord.BootFailure `json:"plumb_init,omitempty"`
}

// rollbackDetail explains a failed trial of slot: plumb-init's record of
// its fatal error when it wrote one for that slot (then removed), else that
// the boot failed before plumb-init ran.
func (a *Agent) rollbackDetail(version, slot, reason string) *Rollback {
	dataDir := filepath.Dir(filepath.Dir(a.StatePath)) // StatePath is <data>/plumb/state.json
	r := &Rollback{Version: version, Slot: slot, Reason: reason, Time: time.Now().UTC()}
	if reason != "boot failed" {
		r.Detail = reason // the trial boot said why (a failed health check)
		return r
	}
	rec, err := bootrecord.ReadBootFailure(dataDir)
	switch {
	case err != nil:
		r.Detail = "plumb-init's record is unreadable: " + err.Error()
	case rec != nil && rec.Slot == slot:
		r.Init = rec
		r.Detail = "plumb-init: " + rec.Reason
		os.Remove(filepath.Join(dataDir, bootrecord.BootFailureFile))
	default:
		r.Detail = fmt.Sprintf("no record from plumb-init for slot %s: the boot failed before it ran (the firmware refused the signed boot chain, or the boot loader or kernel failed)", slot)
	}
	return r
}

// saveRollback writes r beside the state file (best effort: a report).
func (a *Agent) saveRollback(r *Rollback) {
	b, err := json.Marshal(r)
	if err != nil {
		return
	}
	if err := atomicfile.WriteFile(filepath.Join(filepath.Dir(a.StatePath), RollbackFile), append(b, '\n'), 0o644); err != nil {
		a.log().Warn("rollback report not saved", "err", err)
	}
}

// LoadRollback reads the rollback report in the state directory dir; nil
// when there is none.
func LoadRollback(dir string) *Rollback {
	b, err := os.ReadFile(filepath.Join(dir, RollbackFile))
	if err != nil {
		return nil
	}
	var r Rollback
	if json.Unmarshal(b, &r) != nil {
		return nil
	}
	return &r
}
