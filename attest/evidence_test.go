package attest_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/attest"
	"github.com/plumb-os/plumb/attest/attesttest"
	"github.com/plumb-os/plumb/format/attestapi"
)

var update = flag.Bool("update", false, "rewrite testdata/evidence.json from the TPM simulator")

const sampleEvidence = "testdata/evidence.json"

// TestSampleEvidence keeps testdata/evidence.json, real evidence from the
// simulator (a fuzz seed and the base of the malformed-input table), and
// checks it still parses.
func TestSampleEvidence(t *testing.T) {
	if *update {
		r := newRig(t, kernelDigest)
		ev := r.evidence([]byte("sample nonce 0123456789"))
		b, err := json.MarshalIndent(ev, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, sampleEvidence, append(b, '\n'))
		writeFile(t, "testdata/boot_eventlog", attesttest.Log(r.events))
	}
	b, err := os.ReadFile(sampleEvidence)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := attestapi.ParseEvidence(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("ParseEvidence(%s): %v", sampleEvidence, err)
	}
	if ev.DeviceID != testDevice || len(ev.PCRs) != 16 || len(ev.EventLog) == 0 || len(ev.PlumbLog) != 2 {
		t.Errorf("sample evidence = %+v", ev)
	}
}

// edit decodes the sample into a generic map, applies f, and re-encodes.
func edit(t *testing.T, f func(m map[string]any)) []byte {
	t.Helper()
	b, err := os.ReadFile(sampleEvidence)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMalformedEvidence(t *testing.T) {
	good, err := os.ReadFile(sampleEvidence)
	if err != nil {
		t.Fatal(err)
	}
	big := base64.StdEncoding.EncodeToString(make([]byte, attestapi.MaxEventLogSize+1))
	for _, tc := range []struct {
		name  string
		input []byte
		want  string
	}{
		{"empty", nil, "evidence: expected a JSON object, got nothing"},
		{"truncated", good[:len(good)/2], "evidence: expected a JSON object, got a truncated document"},
		{"syntax", []byte("{\n\"version\": 1,\n\"device_id\": ]\n}"), "evidence: line 3: expected JSON"},
		{"not an object", []byte(`[1,2,3]`), "evidence: (document): expected an object, got JSON array"},
		{"version is a string", edit(t, func(m map[string]any) { m["version"] = "1" }), "evidence: version: expected an integer, got JSON string"},
		{"version 2", edit(t, func(m map[string]any) { m["version"] = 2 }), "evidence: version: expected 1, got 2"},
		{"pcrs is a list", edit(t, func(m map[string]any) { m["pcrs"] = []int{1} }), "evidence: pcrs: expected an object, got JSON array"},
		{"pcr is a number", edit(t, func(m map[string]any) { m["pcrs"].(map[string]any)["4"] = 4 }), "evidence: pcrs.4: expected a string of 64 hex digits, got JSON \"4\""},
		{"pcr not hex", edit(t, func(m map[string]any) { m["pcrs"].(map[string]any)["4"] = "zz" }), `evidence: pcrs.4: expected 64 lower-case hex digits, got "zz"`},
		{"pcr missing", edit(t, func(m map[string]any) { delete(m["pcrs"].(map[string]any), "15") }), "evidence: pcrs: expected the sha256 values of PCRs 0-15 (16 entries), got 15 entries"},
		{"nonce not base64", edit(t, func(m map[string]any) { m["nonce"] = "!!!!" }), "evidence: nonce: expected standard base64"},
		{"nonce too short", edit(t, func(m map[string]any) { m["nonce"] = "AAAA" }), "evidence: nonce: expected 8..64 bytes, got 3"},
		{"quote missing", edit(t, func(m map[string]any) { delete(m, "quote") }), "evidence: quote.attest: expected base64 of 1..2048 bytes, got nothing"},
		{"event log oversized", edit(t, func(m map[string]any) { m["event_log"] = big }), "evidence: event_log: expected 0..1048576 bytes, got 1048577"},
		{"document oversized", append(append([]byte(`{"x":"`), bytes.Repeat([]byte("a"), attestapi.MaxEvidenceSize)...), `"}`...), "evidence: expected at most 2097152 bytes of JSON, got more"},
		{"device id", edit(t, func(m map[string]any) { m["device_id"] = "../../etc" }), `evidence: device_id: expected a device id`},
		{"plumb log type", edit(t, func(m map[string]any) { m["plumb_log"] = map[string]any{} }), "evidence: plumb_log: expected a list, got JSON object"},
		{"plumb log digest", edit(t, func(m map[string]any) { m["plumb_log"].([]any)[0].(map[string]any)["sha256"] = "x" }), `evidence: plumb_log[0].sha256: expected 64 lower-case hex digits, got "x"`},
		{"release missing", edit(t, func(m map[string]any) { delete(m, "release") }), "evidence: release.version: expected a string of 1..256 bytes"},
		{"trailing data", append(append([]byte{}, good...), []byte(`{"more":1}`)...), "evidence: expected one JSON object, got more after it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := attestapi.ParseEvidence(bytes.NewReader(tc.input))
			if err == nil {
				t.Fatalf("ParseEvidence succeeded, want %q", tc.want)
			}
			if !errors.Is(err, attestapi.ErrMalformed) {
				t.Errorf("error %q does not wrap attestapi.ErrMalformed", err)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error = %q, want prefix %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}

// Evidence whose event log is garbage parses (the format is fine) and
// fails the event_log check with a reason.
func TestGarbageEventLog(t *testing.T) {
	r := newRig(t, kernelDigest)
	n := nonce(t)
	ev := r.evidence(n)
	ev.EventLog = []byte("\x00\x01 not a TCG log \xff\xfe")
	b, _ := json.Marshal(ev)
	ev, err := attestapi.ParseEvidence(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	rep := r.ver.Verify(ev, n, r.refs)
	c := rep.Check(attest.CheckEventLog)
	if c.Status != attest.StatusFailed || c.Actual != "an unparseable event log" || !strings.HasPrefix(c.Detail, "event log: ") {
		t.Errorf("event_log = %+v, want failed as unparseable", c)
	}
	if rep.Verdict != attest.VerdictFailed {
		t.Errorf("verdict = %s", rep.Verdict)
	}
}

// Evidence marshals to the wire format as a value and as a pointer (inside
// another document, for instance).
func TestEvidenceMarshalValue(t *testing.T) {
	b, err := os.ReadFile(sampleEvidence)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := attestapi.ParseEvidence(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	wrapped, err := json.Marshal(struct {
		Evidence attestapi.Evidence `json:"evidence"`
	}{*ev})
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Evidence attestapi.Evidence `json:"evidence"`
	}
	if err := json.Unmarshal(wrapped, &back); err != nil {
		t.Fatalf("round trip through a wrapper: %v", err)
	}
	if !bytes.Equal(back.Evidence.Quote.Attest, ev.Quote.Attest) || !bytes.Equal(back.Evidence.PCRs[15], ev.PCRs[15]) {
		t.Error("round trip changed the evidence")
	}
}
