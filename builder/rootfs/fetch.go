package rootfs

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"

	"pault.ag/go/debian/version"
)

// Fetcher downloads Debian packages with `apt-get download` into CacheDir
// (created if missing) and reuses the files already there: a package found
// in the cache costs no apt call, so the cache also pins what an unversioned
// name means until it is cleared. Downloads land in a temporary directory
// and are renamed into the cache, so the cache never holds a partial file.
// apt checks each package against its signed index. Safe for concurrent use.
type Fetcher struct {
	CacheDir string
	Log      *slog.Logger // nil: discard

	// run runs a command in dir and returns its combined output; nil
	// runs it with os/exec. A seam for tests.
	run func(ctx context.Context, dir string, name string, args ...string) ([]byte, error)
}

var (
	// Debian policy 5.6.1: lower case letters, digits, + - . ; at least two
	// characters, starting with a letter or digit.
	debNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	// Debian policy 5.6.12: [epoch:]upstream[-revision].
	debVersionRE = regexp.MustCompile(`^([0-9]+:)?[0-9][A-Za-z0-9.+~:-]*$`)
)

// Fetch returns the path of the .deb for spec, a package name with an
// optional version ("hello" or "hello=2.10-3"), downloading it when the
// cache has none. Without a version, the newest cached version wins.
func (f *Fetcher) Fetch(ctx context.Context, spec string) (string, error) {
	name, ver, err := parseDebSpec(spec)
	if err != nil {
		return "", err
	}
	if f.CacheDir == "" {
		return "", fmt.Errorf("deb %q: fetcher has no cache directory", spec)
	}
	log := f.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(f.CacheDir, 0o755); err != nil {
		return "", fmt.Errorf("deb %q: creating cache: %w", spec, err)
	}
	if p, err := cachedDeb(f.CacheDir, name, ver); err != nil {
		return "", fmt.Errorf("deb %q: %w", spec, err)
	} else if p != "" {
		log.Debug("deb cache hit", "package", spec, "path", p)
		return p, nil
	}

	tmp, err := os.MkdirTemp(f.CacheDir, ".fetch-*")
	if err != nil {
		return "", fmt.Errorf("deb %q: %w", spec, err)
	}
	defer os.RemoveAll(tmp)
	args := []string{"download", "-q"}
	if os.Geteuid() == 0 {
		// apt would drop to _apt, which cannot write to our directory.
		args = append(args, "-o", "APT::Sandbox::User=root")
	}
	args = append(args, spec)
	log.Info("downloading deb", "package", spec)
	run := f.run
	if run == nil {
		run = runCommand
	}
	out, err := run(ctx, tmp, "apt-get", args...)
	if err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("deb %q: %w", spec, ctx.Err())
		}
		if bytes.Contains(out, []byte("Unable to locate package")) ||
			bytes.Contains(out, []byte("was not found")) ||
			bytes.Contains(out, []byte("has no installation candidate")) {
			return "", fmt.Errorf("deb %q: not found by apt-get download (is the name right? run apt-get update)", spec)
		}
		return "", fmt.Errorf("deb %q: apt-get download: %w: %s", spec, err, lastLine(out))
	}
	debs, err := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if err != nil {
		return "", fmt.Errorf("deb %q: %w", spec, err)
	}
	if len(debs) != 1 {
		return "", fmt.Errorf("deb %q: apt-get download left %d .deb files, expected 1", spec, len(debs))
	}
	final := filepath.Join(f.CacheDir, filepath.Base(debs[0]))
	if err := os.Rename(debs[0], final); err != nil {
		return "", fmt.Errorf("deb %q: %w", spec, err)
	}
	log.Info("deb downloaded", "package", spec, "path", final)
	return final, nil
}

// parseDebSpec splits "name[=version]" and checks both parts' syntax.
func parseDebSpec(spec string) (name, ver string, err error) {
	name, ver, versioned := strings.Cut(spec, "=")
	if !debNameRE.MatchString(name) {
		return "", "", fmt.Errorf("deb %q: package name %q: expected Debian package-name syntax (lower-case letters, digits, + - ., at least 2 characters)", spec, name)
	}
	if versioned {
		if !debVersionRE.MatchString(ver) {
			return "", "", fmt.Errorf("deb %q: version %q: expected Debian version syntax like 2.10-3 or 1:1.35.0-4", spec, ver)
		}
		if _, err := version.Parse(ver); err != nil {
			return "", "", fmt.Errorf("deb %q: version %q: %w", spec, ver, err)
		}
	}
	return name, ver, nil
}

// debArch is the Debian architecture apt downloads for by default.
func debArch() string {
	switch runtime.GOARCH {
	case "386":
		return "i386"
	case "arm":
		return "armhf"
	case "ppc64le":
		return "ppc64el"
	}
	return runtime.GOARCH
}

// cachedDeb returns the cached file apt-get download would have written for
// name (at ver, if given; else the newest version), or "".
// apt names it NAME_VERSION_ARCH.deb with ':' quoted as %3a.
func cachedDeb(dir, name, ver string) (string, error) {
	matches, err := filepath.Glob(filepath.Join(dir, name+"_*.deb"))
	if err != nil {
		return "", err
	}
	var best string
	var bestVer version.Version
	for _, m := range matches {
		parts := strings.Split(strings.TrimSuffix(filepath.Base(m), ".deb"), "_")
		if len(parts) != 3 || parts[0] != name || (parts[2] != debArch() && parts[2] != "all") {
			continue
		}
		fileVer, err := url.PathUnescape(parts[1])
		if err != nil {
			continue
		}
		if ver != "" {
			if fileVer == ver {
				return m, nil
			}
			continue
		}
		v, err := version.Parse(fileVer)
		if err != nil {
			continue
		}
		if best == "" || version.Compare(v, bestVer) > 0 {
			best, bestVer = m, v
		}
	}
	return best, nil
}

func runCommand(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	return cmd.CombinedOutput()
}

// lastLine returns the last non-empty line of out, for error messages.
func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
