package recipe

import (
	"io/fs"
	"testing"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    Size
		wantErr bool
	}{
		{"0", 0, false},
		{"4096", 4096, false},
		{"64MiB", 64 * MiB, false},
		{"2GiB", 2 * GiB, false},
		{"512M", 512 * MiB, false},
		{"128KiB", 128 * KiB, false},
		{"128k", 128 * KiB, false},
		{"1T", TiB, false},
		{"100MB", 100_000_000, false},
		{"3 GiB", 3 * GiB, false},
		{"10B", 10, false},
		{"lots", 0, true},
		{"", 0, true},
		{"-1", 0, true},
		{"1.5GiB", 0, true},
		{"12XB", 0, true},
		{"9223372036854775807", 1<<63 - 1, false},
		{"9223372036854775808", 0, true},
		{"8388608TiB", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestSizeString(t *testing.T) {
	tests := []struct {
		in   Size
		want string
	}{
		{0, "0"},
		{1000, "1000"},
		{4 * KiB, "4KiB"},
		{128 * MiB, "128MiB"},
		{1536 * MiB, "1536MiB"},
		{2 * GiB, "2GiB"},
		{3 * TiB, "3TiB"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
		}
		if back, err := ParseSize(tt.in.String()); err != nil || back != tt.in {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in.String(), back, err, int64(tt.in))
		}
	}
}

func TestParseMode(t *testing.T) {
	tests := []struct {
		in      string
		want    Mode
		wantErr bool
	}{
		{"0644", 0o644, false},
		{"644", 0o644, false},
		{"0o755", 0o755, false},
		{"4755", 0o4755, false},
		{"00644", 0o644, false},
		{"0", 0, false},
		{"0999", 0, true},
		{"rwxr-xr-x", 0, true},
		{"17777", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseMode(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseMode(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestModePerm(t *testing.T) {
	tests := []struct {
		in   Mode
		want fs.FileMode
	}{
		{0o644, 0o644},
		{0o4755, fs.ModeSetuid | 0o755},
		{0o2750, fs.ModeSetgid | 0o750},
		{0o1777, fs.ModeSticky | 0o777},
	}
	for _, tt := range tests {
		if got := tt.in.Perm(); got != tt.want {
			t.Errorf("Mode(%v).Perm() = %v, want %v", tt.in, got, tt.want)
		}
	}
}
