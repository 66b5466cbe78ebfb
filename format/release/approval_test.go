package release

import (
	"strings"
	"testing"
)

// TestMalformedApproval: an approval in the release facts that names
// nothing, a bad group or a bad device id is one line naming the field.
func TestMalformedApproval(t *testing.T) {
	facts := func(approved string) string {
		return `{"kind":"full","hardware":"qemu","version":"2.0.0","channel":"stable","rollout":100,` +
			`"rootfs":{"sha256":"` + strings.Repeat("a", 64) + `","size":1},"approved":` + approved + `}`
	}
	for _, tt := range []struct{ approved, want string }{
		{`{}`, "release facts: approved: expected all, groups or devices, got none"},
		{`{"groups":["Site A"]}`, `release facts: approved.groups[0]: expected a group name like "site-a", got "Site A"`},
		{`{"devices":["abc"]}`, `release facts: approved.devices[0]: expected a 16-character device id, got "abc"`},
		{`{"devices":"abcdefghijklmnop"}`, "release facts: json: cannot unmarshal string into Go struct field Approval.approved.devices of type []string"},
	} {
		_, err := Parse([]byte(facts(tt.approved)))
		if err == nil || err.Error() != tt.want {
			t.Errorf("Parse(approved %s) = %v, want %q", tt.approved, err, tt.want)
		}
	}
	f, err := Parse([]byte(facts(`{"groups":["site-a"],"devices":["abcdefghijklmnop"]}`)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		id, group string
		want      bool
	}{{"abcdefghijklmnop", "", true}, {"zzzzzzzzzzzzzzzz", "site-a", true}, {"zzzzzzzzzzzzzzzz", "site-b", false}, {"zzzzzzzzzzzzzzzz", "", false}} {
		if got := f.Approved.Covers(tt.id, tt.group); got != tt.want {
			t.Errorf("Covers(%s, %q) = %v, want %v", tt.id, tt.group, got, tt.want)
		}
	}
}
