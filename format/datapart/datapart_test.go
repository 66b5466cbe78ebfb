package datapart

import (
	"strings"
	"testing"
)

// TestMarker: a marker round-trips, and a bad one is one error line naming
// the field and what was expected.
func TestMarker(t *testing.T) {
	const part = 64 << 20
	m := Marker{Compressed: 2074, SHA256: strings.Repeat("ab", 32), Size: part - SegmentOffset}
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != MarkerSize || !IsMarker(b) {
		t.Fatalf("Encode: %d bytes, IsMarker %v", len(b), IsMarker(b))
	}
	got, err := DecodeMarker(b, part)
	if err != nil || got != m {
		t.Fatalf("DecodeMarker = %+v, %v; want %+v", got, err, m)
	}
	for _, c := range []struct {
		m    Marker
		want string
	}{
		{Marker{Compressed: 0, SHA256: m.SHA256, Size: m.Size}, "compressed: expected 1..524288 bytes, got 0"},
		{Marker{Compressed: MaxImage + 1, SHA256: m.SHA256, Size: m.Size}, "compressed: expected 1..524288 bytes"},
		{Marker{Compressed: 1, SHA256: "x", Size: m.Size}, `sha256: expected 64 hex digits, got "x"`},
		{Marker{Compressed: 1, SHA256: m.SHA256, Size: part}, "size: expected a multiple of 4096 up to 66060288"},
		{Marker{Compressed: 1, SHA256: m.SHA256, Size: 4097}, "size: expected a multiple of 4096"},
	} {
		b, _ := c.m.Encode()
		_, err := DecodeMarker(b, part)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("DecodeMarker(%+v) = %v, want one line with %q", c.m, err, c.want)
		}
	}
	if _, err := DecodeMarker(make([]byte, MarkerSize), part); err == nil || !strings.Contains(err.Error(), "expected the marker") {
		t.Errorf("zeros: %v", err)
	}
	if _, err := DecodeMarker([]byte(Magic+"{not json\n"), part); err == nil || !strings.HasPrefix(err.Error(), "data partition marker: ") {
		t.Errorf("bad JSON: %v", err)
	}
}
