package release

import (
	"strings"
	"testing"

	"github.com/plumb-os/plumb/format/verity"
)

func TestVerityAndUKIFacts(t *testing.T) {
	sha := strings.Repeat("ab", 32)
	good := func() *Facts {
		return &Facts{Kind: KindFull, Hardware: "qemu", Version: "1.0.0", Channel: "stable", Rollout: 100,
			Rootfs: Digest{SHA256: sha, Size: 10000},
			Verity: &verity.Facts{RootHash: sha, Salt: sha, DataBlocks: 3, HashOffset: 3 * 4096},
			UKI:    map[string]Digest{"a": {SHA256: sha, Size: 5}, "b": {SHA256: sha, Size: 5}}}
	}
	if err := good().Validate(); err != nil {
		t.Fatalf("Validate = %v", err)
	}
	p, err := good().VerityParams()
	if err != nil || p.DataBlocks != 3 {
		t.Fatalf("VerityParams = %+v, %v", p, err)
	}
	for _, c := range []struct {
		name   string
		change func(*Facts)
		want   string
	}{
		{"blocks for another size", func(f *Facts) { f.Verity.DataBlocks, f.Verity.HashOffset = 4, 4*4096 }, "release facts: verity.data_blocks: expected 3 for a rootfs of 10000 bytes, got 4"},
		{"offset", func(f *Facts) { f.Verity.HashOffset = 4096 }, "hash offset: expected 12288"},
		{"root hash", func(f *Facts) { f.Verity.RootHash = "xyz" }, `release facts: verity.root_hash: expected 64 hex digits, got "xyz"`},
		{"uki slot", func(f *Facts) { f.UKI["c"] = Digest{SHA256: sha, Size: 1} }, `release facts: uki: expected slots a and b, got "c"`},
		{"uki digest", func(f *Facts) { f.UKI["a"] = Digest{SHA256: sha} }, "release facts: uki.a.size: expected a positive size, got 0"},
		{"uki without verity", func(f *Facts) { f.Verity = nil }, "release facts: uki: expected verity facts with it"},
	} {
		f := good()
		c.change(f)
		err := f.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Validate = %v, want %q", c.name, err, c.want)
		}
	}
	if got := UKIPath("qemu", "1.0.0", "b"); got != "qemu/1.0.0/uki-b.efi" {
		t.Errorf("UKIPath = %q", got)
	}
}
