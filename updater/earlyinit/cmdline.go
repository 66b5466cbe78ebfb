package earlyinit

import (
	"fmt"
	"strings"
)

// Cmdline is a parsed kernel command line: parameter -> value. A parameter
// without "=" maps to "". The last occurrence of a parameter wins, as in the
// kernel. Arguments after "--" belong to init and are not included.
type Cmdline map[string]string

// ParseCmdline parses the contents of /proc/cmdline. Double quotes group
// words with spaces (`foo="a b"`) and are removed, as the kernel does.
func ParseCmdline(s string) Cmdline {
	c := Cmdline{}
	for _, word := range splitCmdline(s) {
		if word == "--" {
			break
		}
		k, v, _ := strings.Cut(word, "=")
		c[k] = v
	}
	return c
}

// splitCmdline splits at ASCII white space outside double quotes, byte by
// byte as the kernel does (the command line need not be UTF-8).
func splitCmdline(s string) []string {
	var words []string
	var cur []byte
	inWord, quoted := false, false
	for i := 0; i < len(s); i++ {
		b := s[i]
		switch {
		case b == '"':
			quoted = !quoted
			inWord = true
		case !quoted && isSpace(b):
			if inWord {
				words = append(words, string(cur))
				cur = cur[:0]
				inWord = false
			}
		default:
			cur = append(cur, b)
			inWord = true
		}
	}
	if inWord {
		words = append(words, string(cur))
	}
	return words
}

// isSpace is the kernel's isspace for the command line.
func isSpace(b byte) bool {
	return b == ' ' || b == '\t' || b == '\n' || b == '\v' || b == '\f' || b == '\r'
}

// Has reports whether the parameter is present, with or without a value.
func (c Cmdline) Has(key string) bool {
	_, ok := c[key]
	return ok
}

// RootPARTUUID returns the lower-case UUID of root=PARTUUID=<uuid>.
func (c Cmdline) RootPARTUUID() (string, error) {
	root, ok := c["root"]
	if !ok {
		return "", fmt.Errorf("kernel command line: expected root=PARTUUID=<uuid>, got no root= parameter")
	}
	u, ok := strings.CutPrefix(root, "PARTUUID=")
	if !ok || !isUUID(u) {
		return "", fmt.Errorf("kernel command line: root: expected PARTUUID=<uuid>, got %q", root)
	}
	return strings.ToLower(u), nil
}

// isUUID reports whether s has the 8-4-4-4-12 hex form.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch i {
		case 8, 13, 18, 23:
			if r != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
				return false
			}
		}
	}
	return true
}
