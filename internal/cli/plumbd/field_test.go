package plumbd

import "testing"

// TestDiskOf: media on the boot disk are never read as update sticks.
func TestDiskOf(t *testing.T) {
	for in, want := range map[string]string{"/dev/vda3": "vda", "/dev/sda12": "sda", "/dev/nvme0n1p2": "nvme0n1", "/dev/mmcblk0p1": "mmcblk0", "": ""} {
		if got := diskOf(in); got != want {
			t.Errorf("diskOf(%q) = %q, want %q", in, got, want)
		}
	}
}
