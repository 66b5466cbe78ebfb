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
		if len(rep.Checks) != 15 || rep.Verdict == "" {
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

// FuzzSecureBootLog feeds arbitrary bytes, seeded with the real Secure
// Boot UKI log, to the event log parser and then to what reads the new
// reference values out of it: the PCR 7 Secure Boot state (go-attestation's
// parser behind a recover), the PCR 11 UKI sections and the measured
// command line's verity root hash. An error or a check, never a panic.
func FuzzSecureBootLog(f *testing.F) {
	sb, err := os.ReadFile(filepath.Join("testdata", "secureboot_uki_eventlog"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sb)
	f.Add(sb[:2048])
	f.Add([]byte{})
	refs := References{
		VerityRoot: strings.Repeat("ab", 32),
		UKI:        map[string]string{"a": strings.Repeat("cd", 32)},
		Cmdline:    map[string]string{"a": "root=x plumb.verity.root=" + strings.Repeat("ab", 32)},
		SecureBoot: &SecureBootReference{DB: CertReference{SHA256: strings.Repeat("ef", 32)}},
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		events, err := ParseEventLog(b)
		if err != nil {
			return
		}
		ch := chainFrom(events)
		for _, c := range []Check{checkSecureBoot(&ch, refs, ""), checkVerityRoot(&ch, refs, ""), checkCmdline(&ch, refs, ""), checkKernel(&ch, refs, "")} {
			if c.Status == "" || strings.Contains(c.Detail, "\n") {
				t.Fatalf("check %s: status %q, detail %q", c.Name, c.Status, c.Detail)
			}
		}
	})
}
