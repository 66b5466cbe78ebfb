package disklayout

import (
	"fmt"
	"strings"
)

// Slot names one of the two root slots.
type Slot string

// The two slots.
const (
	A Slot = "a"
	B Slot = "b"
)

// Slots lists both, A first.
var Slots = [2]Slot{A, B}

// Other returns the other slot: A for B, B for anything else.
func (s Slot) Other() Slot {
	if s == A {
		return B
	}
	return A
}

// Valid tells whether s is A or B.
func (s Slot) Valid() bool { return s == A || s == B }

// RootName is the slot's GPT partition name ("plumb-root-a").
func (s Slot) RootName() string { return rootPrefix + string(s) }

// ParseSlot reads a slot letter ("a", "b").
func ParseSlot(s string) (Slot, error) {
	if sl := Slot(s); sl.Valid() {
		return sl, nil
	}
	return "", fmt.Errorf("slot: expected \"a\" or \"b\", got %q", s)
}

const rootPrefix = "plumb-root-"

// SlotOf returns the slot of a root partition name ("plumb-root-a" -> A),
// or "" if the name is not a root slot's.
func SlotOf(partName string) Slot {
	s, ok := strings.CutPrefix(partName, rootPrefix)
	if !ok || !Slot(s).Valid() {
		return ""
	}
	return Slot(s)
}
