package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStateRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state.json")
	s, err := LoadState(p)
	if err != nil || s.Phase != PhaseIdle {
		t.Fatalf("LoadState(missing) = %+v, %v; want idle", s, err)
	}
	s.Phase, s.Version, s.Slot, s.Bytes, s.Total = PhaseApplying, "2.0.0", "b", 10, 100
	s.Method, s.Fetched, s.Fallback = MethodDelta, 5, ""
	s.LastCheck = time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	s.MarkBad("1.5.0", "boot failed")
	if err := s.Save(p); err != nil {
		t.Fatal(err)
	}
	got, err := LoadState(p)
	if err != nil {
		t.Fatal(err)
	}
	if got.Phase != s.Phase || got.Version != "2.0.0" || got.Bytes != 10 || got.Method != MethodDelta || got.Fetched != 5 || !got.LastCheck.Equal(s.LastCheck) || !got.BadSet()["1.5.0"] {
		t.Errorf("round trip = %+v, want %+v", got, s)
	}
}

func TestParseStateRejects(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{`, "unexpected end of JSON input"},
		{`{"phase":"flying"}`, `phase: expected one of`},
		{`{"phase":"idle","slot":"c"}`, `slot: expected a or b`},
		{`{"phase":"idle","bytes":5,"total":2}`, `expected 0 <= bytes <= total`},
		{`{"phase":"idle","method":"carrier pigeon"}`, `method: expected delta or full, got "carrier pigeon"`},
		{`{"phase":"applying","fetched":-1}`, `fetched: expected a count >= 0, got -1`},
		{`{"phase":"idle","bytes":"x"}`, `cannot unmarshal`},
		{strings.Repeat(" ", maxStateSize+1), "expected at most"},
	}
	for _, tt := range tests {
		_, err := ParseState([]byte(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseState(%.40q) = %v, want one line containing %q", tt.in, err, tt.want)
		}
	}
}

func TestLoadStateUnreadable(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	if err := os.Mkdir(p, 0o755); err != nil { // a directory where the file should be
		t.Fatal(err)
	}
	if _, err := LoadState(p); err == nil {
		t.Error("LoadState of a directory succeeded")
	}
}

func FuzzParseState(f *testing.F) {
	f.Add([]byte(`{"phase":"idle"}`))
	f.Add([]byte(`{"phase":"downloading","version":"2.0.0","slot":"b","bytes":1,"total":2,"bad":{"1.0":"x"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseState(data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
			return
		}
		// What parses must survive a save and a parse again.
		p := filepath.Join(t.TempDir(), "s.json")
		if err := s.Save(p); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadState(p); err != nil {
			t.Errorf("saved state does not load: %v", err)
		}
	})
}

// OnSave sees every saved state, after it is on disk.
func TestOnSave(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state.json")
	var seen []string
	a := &Agent{StatePath: p, state: &State{Phase: PhaseIdle}}
	a.OnSave = func(s *State) {
		onDisk, err := LoadState(p)
		if err != nil || onDisk.Phase != s.Phase {
			t.Errorf("OnSave(%s) before the state is on disk (disk: %+v, %v)", s.Phase, onDisk, err)
		}
		seen = append(seen, s.Phase)
	}
	for _, ph := range []string{PhaseDownloading, PhaseVerified, PhaseCommitted} {
		a.state.Phase = ph
		if err := a.save(); err != nil {
			t.Fatal(err)
		}
	}
	if got := strings.Join(seen, ","); got != "downloading,verified,committed" {
		t.Errorf("OnSave saw %s", got)
	}
}
