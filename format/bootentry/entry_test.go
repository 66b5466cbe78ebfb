package bootentry

import (
	"strings"
	"testing"

	"github.com/plumb-os/plumb/format/disklayout"
)

func TestParseName(t *testing.T) {
	tests := []struct {
		name    string
		want    Entry
		wantErr bool
	}{
		{"plumb-1.0.0.conf", Entry{Version: "1.0.0"}, false},
		{"plumb-2.0.0+3.conf", Entry{Version: "2.0.0", Counting: true, TriesLeft: 3}, false},
		{"plumb-2.0.0+2-1.conf", Entry{Version: "2.0.0", Counting: true, TriesLeft: 2, TriesDone: 1}, false},
		{"plumb-2.0.0+0-3.conf", Entry{Version: "2.0.0", Counting: true, TriesLeft: 0, TriesDone: 3}, false},
		{"plumb-1.2.3-rc1+1-2.conf", Entry{Version: "1.2.3-rc1", Counting: true, TriesLeft: 1, TriesDone: 2}, false},
		{"plumb-1.2.3-rc1.conf", Entry{Version: "1.2.3-rc1"}, false},
		{"plumb-1.2.0-rc.1_build.7+3.conf", Entry{Version: "1.2.0-rc.1+build.7", Counting: true, TriesLeft: 3}, false},
		{"plumb-1.2.0-rc.1_build.7.conf", Entry{Version: "1.2.0-rc.1+build.7"}, false},
		{"plumb-1.0.0", Entry{}, true},
		{"other.conf", Entry{}, true},
		{"plumb-.conf", Entry{}, true},
		{"plumb-1.0.0+.conf", Entry{}, true},
		{"plumb-1.0.0+x.conf", Entry{}, true},
		{"plumb-1.0.0+1-.conf", Entry{}, true},
		{"plumb-1.0.0+-1.conf", Entry{}, true},
		{"plumb-1.0.0+1-2-3.conf", Entry{}, true},
		{"plumb-1.2.0+build.7.conf", Entry{}, true}, // a raw "+" would be a boot counter
		{"plumb-1.0.0_.conf", Entry{}, true},
	}
	for _, tt := range tests {
		got, err := ParseName(tt.name)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseName(%q) error = %v, want error %v", tt.name, err, tt.wantErr)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseName(%q) = %+v, want %+v", tt.name, got, tt.want)
		}
		if err == nil && got.Name() != tt.name {
			t.Errorf("ParseName(%q).Name() = %q", tt.name, got.Name())
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseName(%q): multi-line error %q", tt.name, err)
		}
	}
}

// TestRoundTrip: Parse(Name(), Content()) gives the entry back, with its
// tries left, for every kind of version a recipe accepts.
func TestRoundTrip(t *testing.T) {
	for _, e := range []Entry{
		{Version: "1.0.0", Slot: disklayout.A, PartUUID: "7c7f0a17-b18f-84ab-88c1-2c29a0c5c924", Cmdline: "console=ttyS0 panic=5"},
		NewTrial("1.2.0-rc.1+build.7", disklayout.B, "AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE", ""),
		{Version: "2024.05.1", Slot: disklayout.B, PartUUID: "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee", Counting: true, TriesLeft: 1, TriesDone: 2},
		{Version: "3", Slot: disklayout.A, PartUUID: "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee", Counting: true, TriesLeft: 0, TriesDone: 3},
	} {
		got, err := Parse(e.Name(), e.Content())
		if err != nil || got != e {
			t.Errorf("Parse(%q, content) = %+v, %v; want %+v", e.Name(), got, err, e)
		}
	}
}

func TestContentVersionLine(t *testing.T) {
	e := NewTrial("1.2.0-rc.1+build.7", disklayout.B, "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee", "")
	if c := e.Content(); !strings.Contains(c, "\nversion 1.2.0~rc.1\n") || !strings.HasPrefix(c, "title Plumb 1.2.0-rc.1+build.7 (slot b)\n") {
		t.Errorf("Content() =\n%s\nwant the title with the full version and the version line in systemd-boot's order (1.2.0~rc.1)", c)
	}
	if e.Name() != "plumb-1.2.0-rc.1_build.7+3.conf" || e.ID() != "plumb-1.2.0-rc.1_build.7" {
		t.Errorf("Name() = %q, ID() = %q", e.Name(), e.ID())
	}
}

func FuzzParse(f *testing.F) {
	e := NewTrial("1.2.0-rc.1+build.7", disklayout.B, "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee", "quiet")
	f.Add(e.Name(), e.Content())
	f.Add("plumb-1.0.0.conf", "options root=PARTUUID=x ro plumb.slot=a\n")
	f.Fuzz(func(t *testing.T, name, content string) {
		got, err := Parse(name, content)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("multi-line error %q", err)
			}
			return
		}
		if again, err := ParseName(got.Name()); err != nil || again.Version != got.Version || again.TriesLeft != got.TriesLeft || again.TriesDone != got.TriesDone {
			t.Errorf("ParseName(%q) = %+v, %v; want the version and counter of %+v", got.Name(), again, err, got)
		}
	})
}
