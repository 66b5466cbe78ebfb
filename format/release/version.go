package release

import "strings"

// The release version rule, the one every side applies: a recipe accepts
// exactly the versions ValidVersion accepts, the repository publishes them,
// boot entries carry them (format/bootentry), and every comparison is
// CompareVersions, which orders them as systemd-boot orders the entries'
// version lines (BootVersion). Spec: version.md.

// MaxVersionLen bounds a version.
const MaxVersionLen = 128

// ValidVersion reports whether v has the release version syntax: digits
// and dots ("1.0.0", "2024.05.1"), then an optional -pre-release and an
// optional +build suffix, each one or more dot-separated identifiers of
// letters, digits and hyphens ("1.2.0-rc.1", "1.2.0+build.7",
// "1.2.0-rc.1+build.7"). At most MaxVersionLen bytes.
func ValidVersion(v string) bool {
	if v == "" || len(v) > MaxVersionLen {
		return false
	}
	core, build, hasBuild := strings.Cut(v, "+")
	core, pre, hasPre := strings.Cut(core, "-")
	for _, n := range strings.Split(core, ".") {
		if n == "" || strings.Trim(n, "0123456789") != "" {
			return false
		}
	}
	return (!hasPre || idents(pre)) && (!hasBuild || idents(build))
}

// idents checks dot-separated identifiers of [0-9A-Za-z-].
func idents(s string) bool {
	for _, id := range strings.Split(s, ".") {
		if id == "" {
			return false
		}
		for i := 0; i < len(id); i++ {
			if c := id[i]; !isAlnum(c) && c != '-' {
				return false
			}
		}
	}
	return true
}

// BootVersion is v as a boot entry's version line carries it, in the
// Version Format Specification systemd-boot sorts by (UAPI.10): the
// pre-release separator becomes "~" (older than the release), the +build
// suffix is dropped (it never orders releases).
// "1.2.0-rc.1+build.7" -> "1.2.0~rc.1".
func BootVersion(v string) string {
	v, _, _ = strings.Cut(v, "+")
	if i := strings.IndexByte(v, '-'); i >= 0 {
		v = v[:i] + "~" + v[i+1:]
	}
	return v
}

// CompareVersions compares two release versions and returns -1 if a is
// older than b, 0 if they are the same release and +1 if a is newer. It
// is systemd-boot's order (UAPI.10, strverscmp_improved) of their
// BootVersion, so the agent, the repository and the boot loader always
// agree on which release is newer:
//
//   - numbers compare numerically, leading zeros ignored ("1.10" > "1.9",
//     "2024.05.1" == "2024.5.1"); more components is newer ("1.0.0" >
//     "1.0");
//   - a -pre-release is older than its release ("1.0.0-rc.1" < "1.0.0");
//     inside it, letters and numbers alternate as segments ("rc2" <
//     "rc10"), and a number is newer than letters ("alpha.1" >
//     "alpha.beta");
//   - the +build suffix is ignored ("1.0.0+b1" == "1.0.0+b2").
//
// Inputs that are not valid versions are compared by the same rules; they
// never panic.
func CompareVersions(a, b string) int { return uapiCompare(BootVersion(a), BootVersion(b)) }

// uapiCompare is systemd's strverscmp_improved
// (src/fundamental/string-util-fundamental.c).
func uapiCompare(a, b string) int {
	if a == "" || b == "" {
		return strings.Compare(a, b)
	}
	for {
		a, b = strings.TrimLeftFunc(a, notVersionRune), strings.TrimLeftFunc(b, notVersionRune)
		// '~' (pre-release): the side with it is older.
		if at, bt := strings.HasPrefix(a, "~"), strings.HasPrefix(b, "~"); at || bt {
			if at != bt {
				return boolCmp(!at, !bt)
			}
			a, b = a[1:], b[1:]
		}
		// One side ended: the longer one is newer.
		if a == "" || b == "" {
			return boolCmp(a != "", b != "")
		}
		for _, sep := range "-^." {
			as, bs := a[0] == byte(sep), b[0] == byte(sep)
			if as || bs {
				if as != bs {
					return boolCmp(!as, !bs)
				}
				a, b = a[1:], b[1:]
			}
		}
		if isDigit(first(a)) || isDigit(first(b)) {
			an, bn := span(a, isDigit), span(b, isDigit)
			if (an > 0) != (bn > 0) {
				return boolCmp(an > 0, bn > 0) // a number is newer than letters
			}
			x, y := strings.TrimLeft(a[:an], "0"), strings.TrimLeft(b[:bn], "0")
			if len(x) != len(y) {
				return sign(len(x) - len(y))
			}
			if c := strings.Compare(x, y); c != 0 {
				return c
			}
			a, b = a[an:], b[bn:]
			continue
		}
		an, bn := span(a, isAlpha), span(b, isAlpha)
		if c := strings.Compare(a[:min(an, bn)], b[:min(an, bn)]); c != 0 {
			return c
		}
		if an != bn {
			return sign(an - bn)
		}
		a, b = a[an:], b[bn:]
	}
}

func notVersionRune(r rune) bool {
	return r > 0x7f || !(isAlnum(byte(r)) || strings.ContainsRune("~-^.", r))
}

func first(s string) byte {
	if s == "" {
		return 0
	}
	return s[0]
}

func span(s string, f func(byte) bool) int {
	i := 0
	for i < len(s) && f(s[i]) {
		i++
	}
	return i
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isAlnum(c byte) bool { return isDigit(c) || isAlpha(c) }

func boolCmp(x, y bool) int {
	switch {
	case x == y:
		return 0
	case x:
		return 1
	}
	return -1
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}
