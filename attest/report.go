package attest

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// Check statuses.
const (
	StatusPassed        = "passed"
	StatusFailed        = "failed"
	StatusNotCheckable  = "not checkable"
	VerdictPassed       = "passed"
	VerdictFailed       = "failed"
	VerdictIncomplete   = "incomplete" // nothing failed, something could not be checked
	reportSchemaVersion = 1
)

// Report is the verifier's finding for one piece of evidence.
type Report struct {
	Version  int       `json:"version"`
	DeviceID string    `json:"device_id"`
	Release  string    `json:"release"`  // the version the device claims
	Hardware string    `json:"hardware"` // the hardware it claims
	Time     time.Time `json:"time"`
	// Verdict is "passed" when every check passed, "failed" when one
	// failed, "incomplete" otherwise.
	Verdict string  `json:"verdict"`
	Checks  []Check `json:"checks"`
}

// Check is one property the verifier checked.
type Check struct {
	Name     string `json:"name"`
	Status   string `json:"status"` // passed, failed, not checkable
	Expected string `json:"expected,omitempty"`
	Actual   string `json:"actual,omitempty"`
	Detail   string `json:"detail,omitempty"`
}

func (c Check) pass() Check { c.Status = StatusPassed; return c }

func (c Check) fail(actual, detail string) Check {
	c.Status, c.Actual, c.Detail = StatusFailed, actual, detail
	return c
}

func (c Check) notCheckable(why string) Check {
	c.Status, c.Detail, c.Expected = StatusNotCheckable, why, ""
	return c
}

// notCheckableWhy keeps Expected (a reference value worth showing).
func (c Check) notCheckableWhy(why string) Check {
	c.Status, c.Detail = StatusNotCheckable, why
	return c
}

func notCheckable(name, why string) Check {
	return Check{Name: name}.notCheckable(why)
}

func (r *Report) add(c Check) { r.Checks = append(r.Checks, c) }

func (r *Report) finish() {
	r.Version = reportSchemaVersion
	r.Verdict = VerdictPassed
	for _, c := range r.Checks {
		switch c.Status {
		case StatusFailed:
			r.Verdict = VerdictFailed
			return
		case StatusNotCheckable:
			r.Verdict = VerdictIncomplete
		}
	}
}

// Check returns the named check, or nil.
func (r *Report) Check(name string) *Check {
	for i := range r.Checks {
		if r.Checks[i].Name == name {
			return &r.Checks[i]
		}
	}
	return nil
}

// Failed returns the names of the failed checks.
func (r *Report) Failed() []string {
	var out []string
	for _, c := range r.Checks {
		if c.Status == StatusFailed {
			out = append(out, c.Name)
		}
	}
	return out
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// checkTitles are the human names of the checks.
var checkTitles = map[string]string{
	CheckEKCertificate:  "Genuine TPM (EK certificate)",
	CheckAKBinding:      "Attestation key bound to the TPM",
	CheckQuoteSignature: "Quote signed by the attestation key",
	CheckNonce:          "Quote is fresh (nonce)",
	CheckPCRDigest:      "PCR values are the quoted ones",
	CheckEventLog:       "UEFI event log replays to the PCRs",
	CheckPlumbLog:       "Plumb measurement log replays to PCR 15",
	CheckBootloader:     "Bootloader (systemd-boot, PCR 4)",
	CheckKernel:         "Kernel or UKI (PCR 4)",
	CheckInitrd:         "Initrd (PCR 9)",
	CheckCmdline:        "Kernel command line (PCR 12; a UKI's: PCR 11)",
	CheckVerityRoot:     "dm-verity root hash (command line)",
	CheckSecureBoot:     "Secure Boot state (PCR 7)",
	CheckRootfs:         "Root filesystem (PCR 15)",
	CheckRelease:        "Release version (PCR 15)",
}

// WriteMarkdown writes the report for people: a verdict, then one line
// per check.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Attestation report: %s\n\n", mdText(r.DeviceID))
	fmt.Fprintf(&b, "- **Verdict: %s**\n", strings.ToUpper(r.Verdict))
	fmt.Fprintf(&b, "- Claimed release: %s (%s)\n", mdText(r.Release), mdText(r.Hardware))
	fmt.Fprintf(&b, "- Verified at: %s\n\n", r.Time.Format(time.RFC3339))
	b.WriteString("| | Check | Result | Expected | Actual |\n| --- | --- | --- | --- | --- |\n")
	for _, c := range r.Checks {
		mark := map[string]string{StatusPassed: "✅", StatusFailed: "❌", StatusNotCheckable: "⚠️"}[c.Status]
		title := checkTitles[c.Name]
		if title == "" {
			title = c.Name
		}
		result := c.Status
		if c.Detail != "" {
			result += ": " + c.Detail
		}
		fmt.Fprintf(&b, "| %s | %s (`%s`) | %s | %s | %s |\n", mark, title, c.Name, mdText(result), mdCode(c.Expected), mdCode(c.Actual))
	}
	if fs := r.Failed(); len(fs) > 0 {
		fmt.Fprintf(&b, "\nFailed: %s.\n", strings.Join(fs, ", "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// mdText escapes what would break a table cell.
func mdText(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

func mdCode(s string) string {
	if s == "" {
		return ""
	}
	return "`" + strings.ReplaceAll(mdText(s), "`", "'") + "`"
}
