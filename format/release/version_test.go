package release

import "testing"

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"1.0.0", "1.0.0", 0},
		{"1.0", "1.0.0", 0},
		{"1.0.1", "1.0.0", 1},
		{"1.9", "1.10", -1},
		{"2", "1.99.99", 1},
		{"2024.05.1", "2024.5.1", 0},
		{"1.0.0-rc.1", "1.0.0", -1},
		{"1.0.0", "1.0.0-rc.1", 1},
		{"1.0.0-rc.2", "1.0.0-rc.10", -1},
		{"1.0.0-alpha", "1.0.0-alpha.1", -1},
		{"1.0.0-alpha.beta", "1.0.0-alpha.1", 1},
		{"1.0.0-beta", "1.0.0-alpha", 1},
		{"1.0.0+build.1", "1.0.0+build.2", 0},
		{"1.0.0-rc.1+b", "1.0.0-rc.1", 0},
		{"123456789012345678901234567890", "123456789012345678901234567889", 1},
		{"", "0", 0},
		{"garbage", "1", 1},
	}
	for _, tt := range tests {
		if got := CompareVersions(tt.a, tt.b); got != tt.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := CompareVersions(tt.b, tt.a); got != -tt.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tt.b, tt.a, got, -tt.want)
		}
	}
}

func TestValidVersion(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"1", true},
		{"1.0.0", true},
		{"2024.05.1", true},
		{"1.2.0-rc.1", true},
		{"1.2.0+build.7", true},
		{"1.2.0-rc.1+build.7", true},
		{"", false},
		{"v1.0.0", false},
		{"1.x", false},
		{"1..2", false},
		{"1.0.", false},
		{"1.0.0-", false},
		{"1.0.0 beta", false},
		{"1.0/../x", false},
	}
	for _, tt := range tests {
		if got := ValidVersion(tt.in); got != tt.want {
			t.Errorf("ValidVersion(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
