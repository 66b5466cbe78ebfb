package attest_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"

	"github.com/plumb-os/plumb/attest"
	"github.com/plumb-os/plumb/attest/attesttest"
	"github.com/plumb-os/plumb/format/attestapi"
)

// The Secure Boot tests use a real event log: OVMF's Secure Boot build
// (OVMF_CODE_4M.secboot.fd, snakeoil PK/KEK/db) with swtpm, starting the
// signed systemd-boot 252 and the demo's signed UKI of slot a (systemd
// 252's stub, Debian's 6.1 kernel), captured from
// /sys/kernel/security/tpm0/binary_bios_measurements in the guest
// (testdata/README.md). Its reference values are those the builder
// published for that build (testdata/secureboot_uki_references.json).

func readUKILog(t *testing.T) ([]byte, attest.References) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "secureboot_uki_eventlog"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join("testdata", "secureboot_uki_references.json"))
	if err != nil {
		t.Fatal(err)
	}
	var refs attest.References
	if err := json.Unmarshal(b, &refs); err != nil {
		t.Fatal(err)
	}
	if err := refs.Validate(); err != nil {
		t.Fatal(err)
	}
	return raw, refs
}

// bootEvidence replays a firmware log into a fresh simulator's PCRs, as
// the firmware did, and returns the device's evidence quoting them.
func bootEvidence(t *testing.T, raw []byte) (*attestapi.Evidence, []byte) {
	t.Helper()
	events, err := attest.ParseEventLog(raw)
	if err != nil {
		t.Fatalf("ParseEventLog: %v", err)
	}
	rw := attesttest.Simulator(t, 3)
	for _, e := range events {
		if e.Type == attesttest.EvNoAction {
			continue
		}
		if err := tpm2.PCRExtend(rw, tpmutil.Handle(e.Index), tpm2.AlgSHA256, e.Digest, ""); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	logPath := filepath.Join(dir, "log")
	writeFile(t, logPath, raw)
	dev, err := attest.NewDevice(rw, "", attest.WithDeviceID("sb-vm"), attest.WithEventLog(logPath), attest.WithPlumbLog(filepath.Join(dir, "none")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	n := []byte("a fresh nonce 02")
	ev, err := dev.Evidence(t.Context(), n, attestapi.Release{Version: "1.0.0", Hardware: "qemu-secure"})
	if err != nil {
		t.Fatal(err)
	}
	return ev, n
}

// editLog re-encodes a real log after edit changed its events (the
// sha256 bank is what is replayed and quoted).
func editLog(t *testing.T, raw []byte, edit func([]attesttest.Event) []attesttest.Event) []byte {
	t.Helper()
	events, err := attest.ParseEventLog(raw)
	if err != nil {
		t.Fatal(err)
	}
	var out []attesttest.Event
	for _, e := range events {
		out = append(out, attesttest.Event{PCR: e.Index, Type: uint32(e.Type), Data: e.Data, Digest: e.Digest})
	}
	return attesttest.Log(edit(out))
}

func checkStatus(t *testing.T, rep *attest.Report, want map[string]string) {
	t.Helper()
	for name, w := range want {
		c := rep.Check(name)
		if c == nil || c.Status != w {
			t.Errorf("check %s = %+v, want %s", name, c, w)
		}
	}
	if t.Failed() {
		var b strings.Builder
		rep.WriteMarkdown(&b)
		t.Log("\n" + b.String())
	}
}

// TestSecureBootUKILog: the real log of a Secure Boot UKI boot passes
// against the build's reference values: Secure Boot on with the owner's
// keys, systemd-boot and the slot's UKI in PCR 4, the UKI's .cmdline and
// .initrd in PCR 11 (and the initrd in PCR 9), the verity root hash read
// from that command line.
func TestSecureBootUKILog(t *testing.T) {
	raw, refs := readUKILog(t)
	ev, n := bootEvidence(t, raw)
	rep := attest.NewVerifier(attest.VerifierOptions{}).Verify(ev, n, refs)
	checkStatus(t, rep, map[string]string{
		attest.CheckEventLog:   attest.StatusPassed,
		attest.CheckSecureBoot: attest.StatusPassed,
		attest.CheckBootloader: attest.StatusPassed,
		attest.CheckKernel:     attest.StatusPassed,
		attest.CheckInitrd:     attest.StatusPassed,
		attest.CheckCmdline:    attest.StatusPassed,
		attest.CheckVerityRoot: attest.StatusPassed,
	})
	if c := rep.Check(attest.CheckSecureBoot); !strings.HasPrefix(c.Actual, "SecureBoot=1; PK: O=SnakeOil") || !strings.Contains(c.Actual, "dbx: 1 hashes") || !strings.Contains(c.Actual, "verified by: O=SnakeOil") {
		t.Errorf("secure_boot actual = %q", c.Actual)
	}
	if c := rep.Check(attest.CheckKernel); c.Expected != "UKI of slot a: "+refs.UKI["a"] || c.Actual != refs.UKI["a"] {
		t.Errorf("kernel = %+v, want slot a's UKI", c)
	}
	if c := rep.Check(attest.CheckVerityRoot); c.Expected != refs.VerityRoot || c.Actual != refs.VerityRoot || !strings.Contains(c.Detail, "PCR 11") {
		t.Errorf("verity_root = %+v", c)
	}
}

// TestSecureBootUKILogTampered edits the real log into boots that must
// fail, each re-encoded and replayed into the TPM (so the quote and the
// event log agree, as on a device that really booted that way).
func TestSecureBootUKILogTampered(t *testing.T) {
	raw, refs := readUKILog(t)
	otherRoot := strings.Repeat("ab", 32)

	t.Run("secure boot off, loader's command line", func(t *testing.T) {
		// Secure Boot disabled, and the boot loader passing a command line
		// of its own, which systemd's stub then uses (and measures into
		// PCR 12) instead of the signed one: the root maps with another
		// root hash.
		log := editLog(t, raw, func(es []attesttest.Event) []attesttest.Event {
			for i, e := range es {
				if e.PCR == 7 && e.Type == attesttest.EvEFIVariableDriverConfig && bytes.HasSuffix(e.Data, []byte{1}) && strings.Contains(string(e.Data), "S\x00e\x00c\x00u\x00r\x00e\x00B\x00o\x00o\x00t") {
					data := append(bytes.Clone(e.Data[:len(e.Data)-1]), 0)
					es[i] = attesttest.Hashed(7, e.Type, data)
				}
			}
			cmd := strings.Replace(refs.Cmdline["a"], "plumb.verity.root="+refs.VerityRoot, "plumb.verity.root="+otherRoot, 1)
			// With Secure Boot off systemd's stub starts the UKI's kernel
			// through the firmware, which measures it into PCR 4 (as a
			// real Secure-Boot-off log of TestSecureBootVM shows).
			kernel, _ := hex.DecodeString(refs.Kernel)
			es = append(es, attesttest.Event{PCR: 4, Type: attesttest.EvEFIBootServicesApplication, Data: []byte("kernel in the UKI"), Digest: kernel})
			return append(es, attesttest.Hashed(12, attesttest.EvIPL, utf16z(cmd)))
		})
		ev, n := bootEvidence(t, log)
		rep := attest.NewVerifier(attest.VerifierOptions{}).Verify(ev, n, refs)
		checkStatus(t, rep, map[string]string{
			attest.CheckEventLog:   attest.StatusPassed,
			attest.CheckSecureBoot: attest.StatusFailed,
			attest.CheckKernel:     attest.StatusPassed,
			attest.CheckCmdline:    attest.StatusFailed,
			attest.CheckVerityRoot: attest.StatusFailed,
		})
		if c := rep.Check(attest.CheckSecureBoot); !strings.HasPrefix(c.Expected, "SecureBoot=1;") || !strings.HasPrefix(c.Actual, "SecureBoot=0 (off);") || !strings.Contains(c.Detail, "Secure Boot is off") {
			t.Errorf("secure_boot = %+v", c)
		}
		if c := rep.Check(attest.CheckVerityRoot); c.Expected != refs.VerityRoot || c.Actual != otherRoot || !strings.Contains(c.Detail, "PCR 12") {
			t.Errorf("verity_root = %+v, want expected %s, actual %s", c, refs.VerityRoot, otherRoot)
		}
		if c := rep.Check(attest.CheckKernel); c.Actual != refs.UKI["a"]+", "+refs.Kernel || !strings.Contains(c.Detail, "then its kernel") {
			t.Errorf("kernel = %+v, want slot a's UKI, then its kernel", c)
		}
	})

	t.Run("UKI, then another application", func(t *testing.T) {
		log := editLog(t, raw, func(es []attesttest.Event) []attesttest.Event {
			return append(es, attesttest.Event{PCR: 4, Type: attesttest.EvEFIBootServicesApplication, Data: []byte("image path"), Digest: sumBytes("something else")})
		})
		ev, n := bootEvidence(t, log)
		rep := attest.NewVerifier(attest.VerifierOptions{}).Verify(ev, n, refs)
		checkStatus(t, rep, map[string]string{attest.CheckKernel: attest.StatusFailed, attest.CheckSecureBoot: attest.StatusPassed})
		if c := rep.Check(attest.CheckKernel); !strings.HasPrefix(c.Detail, "more EFI applications ran") {
			t.Errorf("kernel = %+v", c)
		}
	})

	t.Run("another UKI", func(t *testing.T) {
		// A UKI signed by the owner but with another command line (an
		// older release's, say): PCR 4 and PCR 11 differ.
		log := editLog(t, raw, func(es []attesttest.Event) []attesttest.Event {
			for i, e := range es {
				if e.PCR == 4 && e.Type == attesttest.EvEFIBootServicesApplication && hex.EncodeToString(e.Digest) == refs.UKI["a"] {
					es[i].Digest = sumBytes("another UKI")
				}
				if e.PCR == 11 && hex.EncodeToString(e.Digest) == sha256Hex(refs.Cmdline["a"]) {
					es[i].Digest = sumBytes("root=PARTUUID=x plumb.verity.root=" + otherRoot)
				}
			}
			return es
		})
		ev, n := bootEvidence(t, log)
		rep := attest.NewVerifier(attest.VerifierOptions{}).Verify(ev, n, refs)
		checkStatus(t, rep, map[string]string{
			attest.CheckSecureBoot: attest.StatusPassed,
			attest.CheckKernel:     attest.StatusFailed,
			attest.CheckCmdline:    attest.StatusFailed,
			attest.CheckVerityRoot: attest.StatusFailed,
		})
		if c := rep.Check(attest.CheckVerityRoot); c.Expected != refs.VerityRoot || c.Actual != "unknown" || !strings.Contains(c.Detail, "none of the release's command lines") {
			t.Errorf("verity_root = %+v", c)
		}
	})

	t.Run("keys of another owner", func(t *testing.T) {
		// The device's firmware trusts keys that are not the release's
		// owner's (the references name another certificate).
		other := refs
		sb := *refs.SecureBoot
		sb.DB = attest.CertReference{SHA256: sha256Hex("another owner's db"), Subject: "CN=Another Owner"}
		other.SecureBoot = &sb
		ev, n := bootEvidence(t, raw)
		rep := attest.NewVerifier(attest.VerifierOptions{}).Verify(ev, n, other)
		checkStatus(t, rep, map[string]string{attest.CheckSecureBoot: attest.StatusFailed})
		if c := rep.Check(attest.CheckSecureBoot); !strings.Contains(c.Detail, "the owner's certificate is not in db") || !strings.Contains(c.Detail, "verified by another db entry: O=SnakeOil") || !strings.Contains(c.Expected, "CN=Another Owner") {
			t.Errorf("secure_boot = %+v", c)
		}
	})
}

// TestKernelBootLogVerity: a real kernel/initrd boot's log (OVMF without
// Secure Boot, systemd-boot 252 measuring the command line as text into
// PCR 12): a release without Secure Boot or verity passes both checks
// (not required); one whose facts have a verity root hash fails, naming
// the root hash (none) the measured command line carried.
func TestKernelBootLogVerity(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "builder", "authenticode", "testdata", "ovmf-eventlog.bin"))
	if err != nil {
		t.Fatal(err)
	}
	ev, n := bootEvidence(t, raw)
	refs := attest.References{
		Bootloader: "7843e376e57323bcdfebcffc8d5109eb39721c83d8bedab1dfd6431596875c2c",
	}
	rep := attest.NewVerifier(attest.VerifierOptions{}).Verify(ev, n, refs)
	checkStatus(t, rep, map[string]string{
		attest.CheckEventLog:   attest.StatusPassed,
		attest.CheckSecureBoot: attest.StatusPassed,
		attest.CheckVerityRoot: attest.StatusPassed,
	})
	if c := rep.Check(attest.CheckSecureBoot); !strings.HasPrefix(c.Actual, "SecureBoot=0 (off); PK: empty") || !strings.HasPrefix(c.Expected, "not required") {
		t.Errorf("secure_boot = %+v", c)
	}
	refs.VerityRoot = strings.Repeat("cd", 32)
	refs.SecureBoot = &attest.SecureBootReference{DB: attest.CertReference{SHA256: sha256Hex("db"), Subject: "CN=Owner"}}
	rep = attest.NewVerifier(attest.VerifierOptions{}).Verify(ev, n, refs)
	checkStatus(t, rep, map[string]string{
		attest.CheckSecureBoot: attest.StatusFailed,
		attest.CheckVerityRoot: attest.StatusFailed,
	})
	if c := rep.Check(attest.CheckVerityRoot); c.Expected != refs.VerityRoot || !strings.HasPrefix(c.Actual, "none: no plumb.verity.root=") || !strings.Contains(c.Detail, "PCR 12") {
		t.Errorf("verity_root = %+v", c)
	}
	if c := rep.Check(attest.CheckSecureBoot); !strings.Contains(c.Detail, "Secure Boot is off") || !strings.Contains(c.Detail, "not in db") {
		t.Errorf("secure_boot = %+v", c)
	}
}

func sumBytes(s string) []byte { d := sha256.Sum256([]byte(s)); return d[:] }

func sha256Hex(s string) string { return hex.EncodeToString(sumBytes(s)) }

// utf16z is s as UTF-16LE with a terminating NUL.
func utf16z(s string) []byte {
	var b []byte
	for _, c := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, c)
	}
	return append(b, 0, 0)
}
