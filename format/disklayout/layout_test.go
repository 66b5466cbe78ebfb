package disklayout

import (
	"crypto/sha256"
	"hash"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// TestSeedUUID: the standard-library derivation gives google/uuid's
// NewHash(sha256, namespace, seed NUL purpose, 8), which earlier releases
// used: partition UUIDs do not change.
func TestSeedUUID(t *testing.T) {
	ns := uuid.MustParse("5b0e4a8c-0d0c-4f8e-9a51-706c756d6221")
	for _, c := range [][2]string{{"edge-demo/qemu-x86_64", "disk"}, {"r/hw", "partition/plumb-root-a"}, {"", "ext4/uuid"}} {
		want := uuid.NewHash(newSHA256(), ns, []byte(c[0]+"\x00"+c[1]), 8).String()
		if got := SeedUUID(c[0], c[1]); got != want {
			t.Errorf("SeedUUID(%q, %q) = %s, want %s", c[0], c[1], got, want)
		}
	}
}

func TestSlot(t *testing.T) {
	if A.Other() != B || B.Other() != A || A.RootName() != NameRootA || B.RootName() != NameRootB {
		t.Error("A/B do not flip or name their partitions")
	}
	for in, want := range map[string]Slot{NameRootA: A, NameRootB: B, "plumb-root-c": "", "plumb-data": "", "plumb-root-": ""} {
		if got := SlotOf(in); got != want {
			t.Errorf("SlotOf(%q) = %q, want %q", in, got, want)
		}
	}
	if _, err := ParseSlot("c"); err == nil || strings.Contains(err.Error(), "\n") {
		t.Errorf("ParseSlot(c) = %v", err)
	}
}

func FuzzLayout(f *testing.F) {
	f.Add(int64(64<<20), int64(512<<20), int64(256<<20), "edge/hw")
	f.Fuzz(func(t *testing.T, esp, root, data int64, seed string) {
		l := Layout{ESPSize: esp, RootSize: root, DataSize: data, Seed: seed}
		if l.Validate() != nil || esp > 1<<40 || root > 1<<40 || data > 1<<40 {
			return
		}
		parts := l.Partitions()
		end := int64(GPTHead)
		for _, p := range parts {
			if p.Start != end || p.Size%MiB != 0 || p.Size <= 0 {
				t.Fatalf("partition %+v does not follow %d", p, end)
			}
			end += p.Size
		}
		if l.DiskSize() != end+GPTTail {
			t.Errorf("DiskSize = %d, want %d", l.DiskSize(), end+GPTTail)
		}
	})
}

func newSHA256() hash.Hash { return sha256.New() }
