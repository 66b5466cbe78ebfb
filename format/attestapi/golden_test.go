package attestapi

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/internal/testutil"
)

// TestGoldenEvidence: evidence the previous release's device sent (made
// with the TPM simulator) parses, and marshals to the golden file.
func TestGoldenEvidence(t *testing.T) {
	ev, err := ParseEvidence(bytes.NewReader(testutil.ReadFixture(t, "testdata/prev/evidence.json")))
	if err != nil {
		t.Fatalf("ParseEvidence(previous release) = %v", err)
	}
	if ev.Version != EvidenceVersion || len(ev.PCRs) != QuotedPCRCount || len(ev.PlumbLog) == 0 {
		t.Errorf("ParseEvidence(previous release) = version %d, %d PCRs, %d plumb_log", ev.Version, len(ev.PCRs), len(ev.PlumbLog))
	}
	b, err := json.MarshalIndent(ev, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	testutil.Golden(t, "testdata/evidence.golden.json", append(b, '\n'))
	again, err := ParseEvidence(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("ParseEvidence(golden) = %v", err)
	}
	if b2, _ := json.MarshalIndent(again, "", "  "); !bytes.Equal(b2, b) {
		t.Error("evidence does not round-trip")
	}
}

func FuzzParseEvidenceWire(f *testing.F) {
	f.Add([]byte(`{"version":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := ParseEvidence(bytes.NewReader(data)); err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("multi-line error %q", err)
		}
	})
}
