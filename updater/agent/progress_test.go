package agent

import (
	"path/filepath"
	"testing"
)

// TestProgressSaver: download progress reaches the state file that
// plumbd status reads.
func TestProgressSaver(t *testing.T) {
	a := &Agent{StatePath: filepath.Join(t.TempDir(), "state.json"), state: &State{Phase: PhaseDownloading, Total: 100}}
	p := &progressSaver{a: a, every: 0}
	for range 3 {
		p.Write(make([]byte, 10))
	}
	st, err := LoadState(a.StatePath)
	if err != nil {
		t.Fatal(err)
	}
	if st.Bytes != 30 || st.Total != 100 || st.Phase != PhaseDownloading {
		t.Errorf("saved state = %+v, want 30 of 100 bytes downloading", st)
	}
}
