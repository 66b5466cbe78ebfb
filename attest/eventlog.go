package attest

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"

	gattest "github.com/google/go-attestation/attest"

	"github.com/plumb-os/plumb/format/attestapi"
)

// TCG PC Client event types used here.
const (
	evNoAction                   = 0x00000003
	evSeparator                  = 0x00000004
	evAction                     = 0x00000005
	evEventTag                   = 0x00000006
	evIPL                        = 0x0000000D
	evEFIAction                  = 0x80000007
	evEFIBootServicesApplication = 0x80000003
)

// Linux EFI stub's tagged event ids (drivers/firmware/efi/libstub).
const (
	linuxInitrdTag      = 0x8F3B22EC
	linuxLoadOptionsTag = 0x8F3B22ED
)

// ParseEventLog parses a raw TCG2 crypto-agile event log (as the kernel
// exposes it in binary_bios_measurements) and returns its sha256 events,
// unverified. Bad input gives an error, never a panic (FuzzEventLog).
func ParseEventLog(raw []byte) ([]gattest.Event, error) {
	if len(raw) > attestapi.MaxEventLogSize {
		return nil, fmt.Errorf("event log: expected at most %d bytes, got %d", attestapi.MaxEventLogSize, len(raw))
	}
	el, err := parseEventLog(raw)
	if err != nil {
		return nil, err
	}
	return el.Events(gattest.HashSHA256), nil
}

// parseEventLog wraps go-attestation's parser; it recovers from a panic in
// it so that hostile input can only ever give an error.
func parseEventLog(raw []byte) (el *gattest.EventLog, err error) {
	defer func() {
		if r := recover(); r != nil {
			el, err = nil, fmt.Errorf("event log: unparseable (parser panicked: %v)", r)
		}
	}()
	el, err = gattest.ParseEventLog(raw)
	if err != nil {
		return nil, fmt.Errorf("event log: %w", err)
	}
	return el, nil
}

// replayLog verifies the event log against the quoted PCRs and returns the
// verified events. On a mismatch the error names each PCR with the quoted
// value and the value the log replays to.
func replayLog(raw []byte, pcrs map[int][]byte) ([]gattest.Event, error) {
	el, err := parseEventLog(raw)
	if err != nil {
		return nil, err
	}
	list := make([]gattest.PCR, 0, len(pcrs))
	for i := range attestapi.QuotedPCRCount {
		list = append(list, gattest.PCR{Index: i, Digest: pcrs[i], DigestAlg: crypto.SHA256})
	}
	events, err := el.Verify(list)
	if err == nil {
		return events, nil
	}
	var re gattest.ReplayError
	if !errors.As(err, &re) {
		return nil, fmt.Errorf("event log: %w", err)
	}
	all := el.Events(gattest.HashSHA256)
	var parts []string
	for _, i := range re.InvalidPCRs {
		parts = append(parts, fmt.Sprintf("PCR %d: quoted %s, log replays to %s", i, hex.EncodeToString(pcrs[i]), hex.EncodeToString(replay(all, i))))
	}
	return nil, &replayError{msg: strings.Join(parts, "; "), pcrs: re.InvalidPCRs}
}

type replayError struct {
	msg  string
	pcrs []int
}

func (e *replayError) Error() string { return e.msg }

// replay extends the sha256 digests of the events for pcr from zeros.
func replay(events []gattest.Event, pcr int) []byte {
	v := make([]byte, sha256.Size)
	for _, e := range events {
		if e.Index != pcr || uint32(e.Type) == evNoAction {
			continue
		}
		h := sha256.New()
		h.Write(v)
		h.Write(e.Digest)
		v = h.Sum(nil)
	}
	return v
}

// bootChain is what the verified event log says was loaded.
type bootChain struct {
	// apps are the digests extended into PCR 4 that are not explained by
	// their event data: the PE/Authenticode digests of the EFI
	// applications the firmware started, in order.
	apps []string
	// initrd is the digest of the EFI stub's "Linux initrd" event in PCR 9.
	initrd []string
	// cmdlines are the kernel command lines systemd-boot measured into
	// PCR 12 (EV_IPL), with the digest and whether it matches its data.
	cmdlines []cmdlineEvent
	// sections are the digests of the UKI sections systemd's stub measured
	// into PCR 11 (EV_IPL, data = the section's name), by name.
	sections map[string][]string
	// events are all the verified events (PCR 7 is read from them).
	events []gattest.Event
}

type cmdlineEvent struct {
	digest  string
	text    string // decoded from the event data (UTF-16LE)
	honest  bool   // digest == sha256(data)
	rawData []byte
}

// chainFrom reads the boot chain out of verified events. An event whose
// type is unknown does not matter here: only digests are trusted (they
// are what the PCRs hold), so PCR 4 is read as "every digest that is not
// the hash of its own event data is code that was run".
func chainFrom(events []gattest.Event) bootChain {
	c := bootChain{sections: map[string][]string{}, events: events}
	for _, e := range events {
		d := hex.EncodeToString(e.Digest)
		self := sha256.Sum256(e.Data)
		explained := bytes.Equal(self[:], e.Digest)
		switch e.Index {
		case 4:
			if uint32(e.Type) == evNoAction {
				continue
			}
			// EV_SEPARATOR, EV_EFI_ACTION and the like hash their data;
			// an application's digest is its Authenticode hash instead.
			if !explained {
				c.apps = append(c.apps, d)
			}
		case 9:
			if uint32(e.Type) == evEventTag && len(e.Data) >= 8 && binary.LittleEndian.Uint32(e.Data) == linuxInitrdTag {
				c.initrd = append(c.initrd, d)
			}
		case 11:
			// systemd's stub (252) measures each UKI section twice, both
			// events described by the section's name: first the name
			// itself (ASCII with its NUL), then the section's bytes.
			if uint32(e.Type) != evIPL || explained {
				continue
			}
			name := eventString(e.Data)
			if n := sha256.Sum256(append([]byte(name), 0)); bytes.Equal(n[:], e.Digest) {
				continue
			}
			c.sections[name] = append(c.sections[name], d)
		case 12:
			if uint32(e.Type) == evIPL {
				c.cmdlines = append(c.cmdlines, cmdlineEvent{digest: d, text: utf16String(e.Data), honest: explained, rawData: e.Data})
			}
		}
	}
	return c
}

// cmdlineDigests are what systemd-boot may extend for a command line:
// sha256 of the UTF-16LE string with its terminating NUL (systemd-boot
// 252's tpm_log_load_options measures strsize16, NUL included) and, to be
// robust to a loader that leaves the NUL out, without it. Both encode the
// same string.
func cmdlineDigests(s string) [2]string {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 0, 2*len(u)+2)
	for _, c := range u {
		b = binary.LittleEndian.AppendUint16(b, c)
	}
	without := sha256.Sum256(b)
	with := sha256.Sum256(append(b, 0, 0))
	return [2]string{hex.EncodeToString(with[:]), hex.EncodeToString(without[:])}
}

// eventString decodes an event's description: UTF-16LE (every second
// byte zero) or ASCII, up to the first NUL.
func eventString(b []byte) string {
	if len(b) >= 2 && b[1] == 0 && b[0] != 0 {
		return utf16String(b)
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// utf16String decodes UTF-16LE up to the first NUL.
func utf16String(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}
