package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"strings"
)

// ReportOutcomes counts release outcomes from the status reports plumb
// serve keeps, one file per device (Dir/<id>.json, server/reports.go). It
// stands in for the fleet service's store, which answers the same question
// from its history. A device tried hardware/version when its last report
// says it runs that version, has installed it (phase entry, rebooting,
// trial or committed), or marked it bad; a download alone is no try. It failed
// it when it marked it bad (rolled back after a failed boot, a failed
// health check or a failed attested commit). A device that failed a
// release and then reported nothing since still counts: its last report
// stays.
//
// Reports are what devices claim: unauthenticated until the fleet service
// authenticates them (issue 12), so a forger can halt a release, never
// start one.
type ReportOutcomes struct {
	Dir string
	// MaxReports caps how many report files one call reads (default
	// 1,000,000); more is an error rather than an unbounded scan.
	MaxReports int
}

// maxReportFile bounds one report file (the server stores at most 64 KiB
// of body, plus its envelope).
const maxReportFile = 256 << 10

// installedPhases are the agent's phases (updater/agent/state.go, PhaseEntry …) in which
// the release it installs is on the device's disk.
var installedPhases = map[string]bool{"entry": true, "rebooting": true, "trial": true, "committed": true}

var reportName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}\.json$`)

// storedReport is the part of a stored report (server.Report whose body
// is plumbd's status) that outcomes need.
type storedReport struct {
	Report struct {
		Status struct {
			Release struct {
				Hardware string `json:"hardware"`
				Version  string `json:"version"`
			} `json:"release"`
			Update *struct {
				Phase   string            `json:"phase"`
				Version string            `json:"version"`
				Bad     map[string]string `json:"bad"`
			} `json:"update"`
		} `json:"status"`
	} `json:"report"`
}

// ReleaseOutcomes implements Outcomes. Files are opened through an
// os.Root of Dir: a link out of it is not followed.
func (o ReportOutcomes) ReleaseOutcomes(ctx context.Context, hardware, version string) (tried, failed int, err error) {
	root, err := os.OpenRoot(o.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("reports: %w", err)
	}
	defer root.Close()
	ents, err := fs.ReadDir(root.FS(), ".")
	if err != nil {
		return 0, 0, fmt.Errorf("reports: %w", err)
	}
	limit := o.MaxReports
	if limit <= 0 {
		limit = 1_000_000
	}
	if len(ents) > limit {
		return 0, 0, fmt.Errorf("reports: %d files in %s, expected at most %d", len(ents), o.Dir, limit)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || !reportName.MatchString(e.Name()) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return 0, 0, err
		}
		r, ok := readReport(root, e.Name())
		if !ok {
			continue // unreadable or not a plumbd report: no outcome
		}
		st := r.Report.Status
		if st.Release.Hardware != hardware {
			continue
		}
		var bad, installed bool
		if u := st.Update; u != nil {
			_, bad = u.Bad[version]
			installed = u.Version == version && installedPhases[u.Phase]
		}
		if bad || st.Release.Version == version || installed {
			tried++
		}
		if bad {
			failed++
		}
	}
	return tried, failed, nil
}

func readReport(root *os.Root, name string) (*storedReport, bool) {
	f, err := root.Open(name)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxReportFile+1))
	if err != nil || len(data) > maxReportFile {
		return nil, false
	}
	var r storedReport
	if json.Unmarshal(data, &r) != nil || strings.TrimSpace(r.Report.Status.Release.Version) == "" {
		return nil, false
	}
	return &r, true
}
