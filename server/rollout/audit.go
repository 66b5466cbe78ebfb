package rollout

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
)

// FileAudit appends audit entries, one JSON object per line, to Path
// (created 0600). It stands in for the fleet service's audit log. Each
// record is synced before Record returns. Safe for concurrent use within
// one process; O_APPEND keeps lines of several processes whole.
type FileAudit struct {
	Path string
	mu   sync.Mutex
}

// maxAuditEntry bounds one line.
const maxAuditEntry = 4 << 10

// Record implements Auditor.
func (a *FileAudit) Record(_ context.Context, e Entry) error {
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if len(line) > maxAuditEntry {
		return fmt.Errorf("audit entry: %d bytes, expected at most %d", len(line), maxAuditEntry)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	f, err := os.OpenFile(a.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	_, err = f.Write(append(line, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("audit log %s: %w", a.Path, err)
	}
	return nil
}
