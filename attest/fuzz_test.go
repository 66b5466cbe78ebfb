package attest

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plumb-os/plumb/format/attestapi"
)

// FuzzParseEvidence feeds arbitrary bytes to the evidence parser and, when
// they parse, to the whole verifier (quote, signature and event log
// decoders included): an error or a report, never a panic.
func FuzzParseEvidence(f *testing.F) {
	good, err := os.ReadFile(filepath.Join("testdata", "evidence.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(`{"version":1,"pcrs":{"0":1}}`))
	f.Add([]byte(`[]`))
	v := NewVerifier(VerifierOptions{Enrolled: MemStore{}})
	refs := References{Version: "2.0.0", Kernel: strings.Repeat("0", 64), Cmdline: map[string]string{"a": "x"}}
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := attestapi.ParseEvidence(bytes.NewReader(b))
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error: %q", err)
			}
			return
		}
		rep := v.Verify(ev, ev.Nonce, refs)
		if len(rep.Checks) != 13 || rep.Verdict == "" {
			t.Fatalf("report with %d checks, verdict %q", len(rep.Checks), rep.Verdict)
		}
	})
}

// FuzzEventLog feeds arbitrary bytes to the event log parser, the replay
// and the boot chain reader.
func FuzzEventLog(f *testing.F) {
	// Small seeds: the fuzzer minimizes every new interesting input, and
	// minimizing one grown from the 38 KB real log took most of the run.
	boot, err := os.ReadFile(filepath.Join("testdata", "boot_eventlog"))
	if err != nil {
		f.Fatal(err)
	}
	real, err := os.ReadFile(filepath.Join("testdata", "ubuntu_2104_shielded_vm_no_secure_boot_eventlog"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(boot)
	f.Add(real[:1024])
	f.Add([]byte{})
	pcrs := map[int][]byte{}
	for i := range attestapi.QuotedPCRCount {
		pcrs[i] = make([]byte, 32)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		events, err := ParseEventLog(b)
		if err != nil {
			return
		}
		_ = chainFrom(events)
		if verified, err := replayLog(b, pcrs); err == nil {
			_ = chainFrom(verified)
		}
	})
}
