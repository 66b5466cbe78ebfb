package attest

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"

	gattest "github.com/google/go-attestation/attest"
)

// secureBootState is what the verified PCR 7 events say about Secure
// Boot: the SecureBoot variable, the PK, KEK, db and dbx the firmware
// measured, and the db entries it used to verify what it ran
// (EV_EFI_VARIABLE_AUTHORITY after the separator).
type secureBootState struct {
	enabled   bool
	pk, kek   []certID
	db        []certID
	dbHashes  int
	dbx       []certID
	dbxHashes int
	authority []certID // after the separator: what verified the boot chain
}

// certID identifies a certificate in a report.
type certID struct{ sha256, subject string }

func (c certID) String() string {
	s := c.subject
	if s == "" {
		s = "(no subject)"
	}
	return s + " (sha256:" + c.sha256[:16] + ")"
}

func certIDs(cs []x509.Certificate) []certID {
	out := make([]certID, 0, len(cs))
	for _, c := range cs {
		s := sha256.Sum256(c.Raw)
		out = append(out, certID{sha256: hex.EncodeToString(s[:]), subject: c.Subject.String()})
	}
	return out
}

// parseSecureBoot reads the Secure Boot state out of verified events with
// go-attestation's parser (which checks every PCR 7 event's digest against
// its data); it recovers from a panic in it so that hostile input only
// gives an error (FuzzSecureBoot).
func parseSecureBoot(events []gattest.Event) (st *secureBootState, err error) {
	defer func() {
		if r := recover(); r != nil {
			st, err = nil, fmt.Errorf("PCR 7 events: unparseable (parser panicked: %v)", r)
		}
	}()
	s, err := gattest.ParseSecurebootState(events)
	if err != nil {
		return nil, fmt.Errorf("PCR 7 events: %w", err)
	}
	return &secureBootState{
		enabled: s.Enabled,
		pk:      certIDs(s.PlatformKeys), kek: certIDs(s.ExchangeKeys),
		db: certIDs(s.PermittedKeys), dbHashes: len(s.PermittedHashes),
		dbx: certIDs(s.ForbiddenKeys), dbxHashes: len(s.ForbiddenHashes),
		authority: certIDs(s.PostSeparatorAuthority),
	}, nil
}

// String is the state as a report's "actual" value.
func (s *secureBootState) String() string {
	on := "SecureBoot=0 (off)"
	if s.enabled {
		on = "SecureBoot=1"
	}
	list := func(cs []certID, hashes int) string {
		var p []string
		for _, c := range cs {
			p = append(p, c.String())
		}
		if hashes > 0 {
			p = append(p, fmt.Sprintf("%d hashes", hashes))
		}
		if len(p) == 0 {
			return "empty"
		}
		return strings.Join(p, ", ")
	}
	return fmt.Sprintf("%s; PK: %s; KEK: %s; db: %s; dbx: %s; boot chain verified by: %s",
		on, list(s.pk, 0), list(s.kek, 0), list(s.db, s.dbHashes), list(s.dbx, s.dbxHashes), list(s.authority, 0))
}

func hasCert(cs []certID, sha string) bool {
	for _, c := range cs {
		if c.sha256 == sha {
			return true
		}
	}
	return false
}

// expectedSecureBoot is the check's "expected" value for a reference.
func expectedSecureBoot(ref *SecureBootReference) string {
	if ref == nil {
		return "not required (the release was built without boot.secure_boot)"
	}
	id := func(c CertReference) string { return certID{sha256: c.SHA256, subject: c.Subject}.String() }
	s := "SecureBoot=1; db holds " + id(ref.DB) + ", not in dbx; boot chain verified by it alone"
	if ref.PK != nil {
		s += "; PK: " + id(*ref.PK)
	}
	if ref.KEK != nil {
		s += "; KEK: " + id(*ref.KEK)
	}
	return s
}

// checkSecureBoot compares the Secure Boot state in PCR 7 with the
// release's: Secure Boot on, the owner's db certificate enrolled, not
// revoked, and the only authority the firmware used for the boot chain;
// PK and KEK the owner's when the release names them.
func checkSecureBoot(ch *bootChain, refs References, why string) Check {
	c := Check{Name: CheckSecureBoot, Expected: expectedSecureBoot(refs.SecureBoot)}
	if ch == nil {
		return c.notCheckableWhy(why)
	}
	st, err := parseSecureBoot(ch.events)
	if err != nil {
		if refs.SecureBoot == nil {
			c.Actual = "unreadable"
			c.Detail = "the release does not require Secure Boot; " + err.Error()
			return c.pass()
		}
		return c.fail("unreadable PCR 7 events", err.Error())
	}
	c.Actual = st.String()
	ref := refs.SecureBoot
	if ref == nil {
		c.Detail = "the release does not require Secure Boot (PCR 7 as measured)"
		return c.pass()
	}
	var bad []string
	if !st.enabled {
		bad = append(bad, "Secure Boot is off: the firmware ran the boot chain without checking its signatures")
	}
	if !hasCert(st.db, ref.DB.SHA256) {
		bad = append(bad, "the owner's certificate is not in db")
	}
	if hasCert(st.dbx, ref.DB.SHA256) {
		bad = append(bad, "the owner's certificate is revoked in dbx")
	}
	if st.enabled {
		if len(st.authority) == 0 {
			bad = append(bad, "no EV_EFI_VARIABLE_AUTHORITY event: nothing was verified after the separator")
		}
		for _, a := range st.authority {
			if a.sha256 != ref.DB.SHA256 {
				bad = append(bad, "the boot chain was verified by another db entry: "+a.String())
			}
		}
	}
	if ref.PK != nil && (len(st.pk) != 1 || st.pk[0].sha256 != ref.PK.SHA256) {
		bad = append(bad, "PK is not the owner's")
	}
	if ref.KEK != nil && !hasCert(st.kek, ref.KEK.SHA256) {
		bad = append(bad, "KEK does not hold the owner's")
	}
	if len(bad) > 0 {
		c.Status = StatusFailed
		c.Detail = strings.Join(bad, "; ")
		return c
	}
	c.Detail = "the firmware's EV_EFI_VARIABLE_DRIVER_CONFIG (SecureBoot, PK, KEK, db, dbx) and EV_EFI_VARIABLE_AUTHORITY events in PCR 7"
	return c.pass()
}

// verityWord is the kernel command line option carrying the root hash
// (format/verity.Params.Cmdline).
const verityWord = "plumb.verity.root="

// verityRootOf returns the value of the last plumb.verity.root= word of a
// command line, or "".
func verityRootOf(cmdline string) string {
	root := ""
	for _, w := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(w, verityWord); ok {
			root = v
		}
	}
	return root
}

// checkVerityRoot reads the dm-verity root hash out of the measured
// kernel command line (what plumb-init maps the root with) and compares
// it with the release's. A kernel/initrd boot measures the command line's
// text (PCR 12); a UKI boot measures only its digest (the .cmdline
// section in PCR 11), so there the text is known only when the digest is
// one of the release's command lines.
func checkVerityRoot(ch *bootChain, refs References, why string) Check {
	c := Check{Name: CheckVerityRoot, Expected: refs.VerityRoot}
	if refs.VerityRoot == "" {
		c.Expected = "none (the release was built without boot.verity)"
	}
	if ch == nil {
		return c.notCheckableWhy(why)
	}
	text, source, err := measuredCmdline(ch, refs)
	if err != nil {
		if refs.VerityRoot == "" {
			c.Actual = "unknown"
			c.Detail = "the release has no verity root hash; " + err.Error()
			return c.pass()
		}
		return c.fail("unknown", err.Error())
	}
	got := verityRootOf(text)
	c.Actual = got
	if got == "" {
		c.Actual = "none: no " + verityWord + " in the measured command line"
	}
	c.Detail = "plumb.verity.root= in " + source
	if got != refs.VerityRoot {
		c.Status = StatusFailed
		if refs.VerityRoot == "" {
			c.Status = StatusPassed
			c.Detail = "the release has no verity root hash; " + c.Detail
		}
		return c
	}
	if got == "" {
		c.Actual = "none"
		c.Detail = "no " + verityWord + " in " + source
	}
	return c.pass()
}

// measuredCmdline returns the kernel command line the boot measured, as
// text, and where it was read.
func measuredCmdline(ch *bootChain, refs References) (text, source string, err error) {
	if len(refs.UKI) > 0 {
		if e, ok := ukiOverride(ch); ok {
			if !e.honest {
				return "", "", fmt.Errorf("the command line event in PCR 12 carries data that does not match its digest %s", e.digest)
			}
			return e.text, "the command line the boot loader passed in PCR 12, which systemd's stub used instead of the UKI's (Secure Boot off)", nil
		}
		if len(ch.sections[".cmdline"]) != 1 {
			return "", "", fmt.Errorf("expected one .cmdline section measured into PCR 11, got %d", len(ch.sections[".cmdline"]))
		}
		d := ch.sections[".cmdline"][0]
		for _, s := range refs.slots() {
			if sum := sha256.Sum256([]byte(refs.Cmdline[s])); hex.EncodeToString(sum[:]) == d {
				return refs.Cmdline[s], "the UKI's .cmdline section in PCR 11 (slot " + s + "'s signed command line, sha256 " + d + ")", nil
			}
		}
		return "", "", fmt.Errorf("the .cmdline section measured into PCR 11 (sha256 %s) is none of the release's command lines, so its root hash cannot be read", d)
	}
	if len(ch.cmdlines) != 1 {
		return "", "", fmt.Errorf("expected one command line in PCR 12, got %d", len(ch.cmdlines))
	}
	e := ch.cmdlines[0]
	if !e.honest {
		return "", "", fmt.Errorf("the command line event in PCR 12 carries data that does not match its digest %s", e.digest)
	}
	return e.text, "the command line systemd-boot measured into PCR 12", nil
}

// ukiOverride returns the command line a boot loader passed to a UKI
// (measured into PCR 12) when systemd's stub used it instead of its
// .cmdline section: the stub does so only when Secure Boot is off. With
// PCR 7 unreadable the override is assumed to have been used.
func ukiOverride(ch *bootChain) (cmdlineEvent, bool) {
	if len(ch.cmdlines) == 0 {
		return cmdlineEvent{}, false
	}
	if st, err := parseSecureBoot(ch.events); err == nil && st.enabled {
		return cmdlineEvent{}, false
	}
	return ch.cmdlines[len(ch.cmdlines)-1], true
}
