package disklayout

import "strings"

// SlotOf returns the slot letter of a root partition name ("plumb-root-a"
// -> "a"), or "" if the name does not follow the scheme.
func SlotOf(partName string) string {
	s, ok := strings.CutPrefix(partName, "plumb-root-")
	if !ok || s == "" {
		return ""
	}
	return s
}
