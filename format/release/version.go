package release

import (
	"regexp"
	"strings"
)

// versionRE is the release version syntax: digits and dots, then an
// optional -pre-release and +build suffix made of letters, digits, dots and
// hyphens ("1.0.0", "2024.05.1", "1.2.0-rc.1", "1.2.0+build.7").
var versionRE = regexp.MustCompile(`^[0-9]+(\.[0-9]+)*(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

// ValidVersion reports whether v has the release version syntax.
func ValidVersion(v string) bool { return len(v) <= 128 && versionRE.MatchString(v) }

// CompareVersions compares two release versions and returns -1 if a is
// older than b, 0 if they are the same release and +1 if a is newer.
//
// The dotted numbers are compared numerically, component by component,
// with missing components counting as 0 ("1.10" > "1.9", "1.0" == "1.0.0").
// As in Semantic Versioning, a version with a -pre-release suffix is older
// than the same version without one ("1.0.0-rc.1" < "1.0.0"); pre-release
// identifiers are compared dot by dot, numerically when both are numbers,
// else as text, numbers sorting before text. A +build suffix is ignored.
// Inputs that are not valid versions are compared by the same rules on a
// best-effort basis; they never panic.
func CompareVersions(a, b string) int {
	acore, apre := splitVersion(a)
	bcore, bpre := splitVersion(b)
	ac, bc := strings.Split(acore, "."), strings.Split(bcore, ".")
	for i := 0; i < len(ac) || i < len(bc); i++ {
		x, y := "0", "0"
		if i < len(ac) && ac[i] != "" {
			x = ac[i]
		}
		if i < len(bc) && bc[i] != "" {
			y = bc[i]
		}
		if c := compareIdent(x, y); c != 0 {
			return c
		}
	}
	switch {
	case apre == "" && bpre == "":
		return 0
	case apre == "":
		return 1
	case bpre == "":
		return -1
	}
	ap, bp := strings.Split(apre, "."), strings.Split(bpre, ".")
	for i := 0; i < len(ap) && i < len(bp); i++ {
		if c := compareIdent(ap[i], bp[i]); c != 0 {
			return c
		}
	}
	return sign(len(ap) - len(bp))
}

// splitVersion drops the +build suffix and splits off the -pre-release.
func splitVersion(v string) (core, pre string) {
	if i := strings.IndexByte(v, '+'); i >= 0 {
		v = v[:i]
	}
	if i := strings.IndexByte(v, '-'); i >= 0 {
		return v[:i], v[i+1:]
	}
	return v, ""
}

// compareIdent compares two identifiers: numbers of any length numerically,
// numbers before text, text byte-wise.
func compareIdent(x, y string) int {
	xn, yn := isDigits(x), isDigits(y)
	switch {
	case xn && yn:
		x, y = strings.TrimLeft(x, "0"), strings.TrimLeft(y, "0")
		if len(x) != len(y) {
			return sign(len(x) - len(y))
		}
		return strings.Compare(x, y)
	case xn:
		return -1
	case yn:
		return 1
	}
	return strings.Compare(x, y)
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
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
