package cli

import "strings"

// IsCobraUsageError reports whether err is one of cobra's own argument or
// command errors, which it returns as plain errors.
func IsCobraUsageError(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "accepts ", "requires at least", "requires at most", "unknown flag", "unknown shorthand", "required flag"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}
