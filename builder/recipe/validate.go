package recipe

import (
	"fmt"
	"math"
	"net/url"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/plumb-os/plumb/format/config"
	"github.com/plumb-os/plumb/format/release"
)

var (
	nameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
	debNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	// debSpecRE: a package name, optionally pinned to a version
	// ("openssl=3.0.20-1~deb12u2"; Debian policy 5.6.12 for the version).
	debSpecRE = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+(=([0-9]+:)?[0-9][A-Za-z0-9.+~:-]*)?$`)
	moduleRE  = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

const (
	maxNameLen    = 64
	maxCmdline    = 2048 // COMMAND_LINE_SIZE on x86
	maxPartition  = 16 * TiB
	minBlockSize  = 4 * KiB
	maxBlockSize  = 1 * MiB
	minPoll       = time.Second
	maxZstdLevel  = 22
	maxSymlinkLen = 4095
)

// SetDefaults fills the fields a recipe may leave out: channel, kernel
// modules, file modes, agent poll, commit and health timeouts, partition
// sizes and compression. Parse and Load call it; call it yourself on a
// Recipe built in Go before Validate. Zero values count as unset, except
// for fields that a parsed recipe set explicitly (mode "0000", say).
func (r *Recipe) SetDefaults() { r.applyDefaults() }

// Validate checks the recipe's fields (not the host paths: Load does that)
// and returns the first problem as an *Error. It expects defaults applied.
func (r *Recipe) Validate() error {
	if err := r.validate(); err != nil {
		return r.at(err)
	}
	return nil
}

func (r *Recipe) validate() error {
	if err := checkName("name", r.Name); err != nil {
		return err
	}
	switch {
	case r.Version == "":
		return fieldErr("version", `required: the release version, like "1.0.0"`)
	case !release.ValidVersion(r.Version):
		return fieldErr("version", fmt.Sprintf(`expected digits and dots like "1.2.3", optionally followed by -suffix and/or +suffix of letters, digits, dots and hyphens, got %q`, r.Version))
	}
	if err := checkName("hardware", r.Hardware); err != nil {
		return err
	}
	if err := checkName("channel", r.Channel); err != nil {
		return err
	}
	if r.Epoch < 0 {
		return fieldErr("epoch", fmt.Sprintf("expected seconds since 1970 (0 or more), got %d", r.Epoch))
	}
	if r.lines != nil && !r.has("kernel") {
		return fieldErr("kernel", "required: say where the kernel comes from with package, deb or file")
	}
	if err := r.Kernel.Validate(); err != nil {
		return within("kernel", err)
	}
	if len(r.Rootfs) == 0 {
		return fieldErr("rootfs", "required: a list of at least one source (deb, dir, tar or oci)")
	}
	for i, s := range r.Rootfs {
		if err := s.Validate(); err != nil {
			return within(fmt.Sprintf("rootfs[%d]", i), err)
		}
	}
	seen := map[string]int{}
	for i, f := range r.Files {
		field := fmt.Sprintf("files[%d]", i)
		if err := f.Validate(); err != nil {
			return within(field, err)
		}
		if f.Kind() == FileSymlink && r.has(field+".mode") {
			return fieldErr(field+".mode", "a symlink takes no mode (symlinks are always 0777)")
		}
		if j, dup := seen[f.Path]; dup {
			return fieldErr(field+".path", fmt.Sprintf("%s is already given by files[%d]", f.Path, j))
		}
		seen[f.Path] = i
	}
	if r.Agent != nil {
		if err := r.Agent.Validate(); err != nil {
			return within("agent", err)
		}
	}
	if err := r.Partitions.Validate(); err != nil {
		return within("partitions", err)
	}
	if err := r.Compression.Validate(); err != nil {
		return within("compression", err)
	}
	if err := r.Boot.Validate(); err != nil {
		return within("boot", err)
	}
	if r.Partitions.DataEncryption != "" && !r.Boot.Verity {
		// The build also needs a Secure Boot key (boot.secure_boot or the
		// --secure-boot-key flag), which needs verity.
		return fieldErr("partitions.data_encryption", fmt.Sprintf("%q seals /data to a signed boot chain: expected boot.verity: true and a Secure Boot key", r.Partitions.DataEncryption))
	}
	return nil
}

func checkName(field, v string) error {
	switch {
	case v == "":
		return fieldErr(field, "required: lower-case letters, digits, '.', '_' or '-'")
	case len(v) > maxNameLen:
		return fieldErr(field, fmt.Sprintf("expected at most %d characters, got %d", maxNameLen, len(v)))
	case !nameRE.MatchString(v):
		return fieldErr(field, fmt.Sprintf("expected lower-case letters, digits, '.', '_' or '-', starting with a letter or digit, got %q", v))
	}
	return nil
}

// exactlyOne checks that exactly one of the named values is set; set lists
// which are, in field order. what names the kind of entry for messages.
func exactlyOne(what string, names []string, set []string) error {
	switch len(set) {
	case 1:
		return nil
	case 0:
		return fieldErr("", fmt.Sprintf("empty %s: expected exactly one of %s", what, strings.Join(names, ", ")))
	}
	return fieldErr(set[1], fmt.Sprintf("conflicts with %s: a %s has exactly one of %s", set[0], what, strings.Join(names, ", ")))
}

func setNames(pairs ...any) []string {
	var out []string
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1].(bool) {
			out = append(out, pairs[i].(string))
		}
	}
	return out
}

// Validate checks the kernel section.
func (k *Kernel) Validate() error {
	set := setNames("package", k.Package != "", "deb", k.Deb != "", "file", k.File != "")
	if err := exactlyOne("kernel", []string{"package", "deb", "file"}, set); err != nil {
		return err
	}
	if k.Package != "" && !debNameRE.MatchString(k.Package) {
		return fieldErr("package", fmt.Sprintf("expected a Debian package name like \"linux-image-amd64\", got %q", k.Package))
	}
	if k.ModulesDir != "" && k.File == "" {
		return fieldErr("modules_dir", "only goes with file (a package or deb brings its own modules)")
	}
	if len(k.Cmdline) > maxCmdline {
		return fieldErr("cmdline", fmt.Sprintf("expected at most %d bytes, got %d", maxCmdline, len(k.Cmdline)))
	}
	if strings.ContainsFunc(k.Cmdline, func(c rune) bool { return c < ' ' || c == 0x7f }) {
		return fieldErr("cmdline", fmt.Sprintf("expected one line without control characters, got %q", k.Cmdline))
	}
	seen := map[string]bool{}
	for i, m := range k.Modules {
		field := fmt.Sprintf("modules[%d]", i)
		if !moduleRE.MatchString(m) {
			return fieldErr(field, fmt.Sprintf("expected a module name like \"virtio_blk\", got %q", m))
		}
		canon := strings.ReplaceAll(m, "-", "_")
		if seen[canon] {
			return fieldErr(field, fmt.Sprintf("module %q is listed twice", m))
		}
		seen[canon] = true
	}
	return nil
}

// Validate checks one root filesystem source.
func (s *Source) Validate() error {
	if s.Deb != nil && len(s.Deb) == 0 {
		return fieldErr("deb", "expected at least one package name")
	}
	set := setNames("deb", s.Deb != nil, "dir", s.Dir != "", "tar", s.Tar != "", "oci", s.OCI != "")
	if err := exactlyOne("source", []string{"deb", "dir", "tar", "oci"}, set); err != nil {
		return err
	}
	for i, p := range s.Deb {
		if !debSpecRE.MatchString(p) {
			return fieldErr(fmt.Sprintf("deb[%d]", i), fmt.Sprintf("expected a Debian package name like \"busybox-static\", optionally pinned like \"busybox-static=1:1.35.0-4+b1\", got %q", p))
		}
	}
	return nil
}

// Validate checks one files entry.
func (f *File) Validate() error {
	if err := checkImagePath("path", f.Path); err != nil {
		return err
	}
	set := setNames("content", f.Content != nil, "source", f.Source != "", "symlink", f.Symlink != "", "dir", f.Dir)
	if err := exactlyOne("file entry", []string{"content", "source", "symlink", "dir"}, set); err != nil {
		return err
	}
	if f.Mode > 0o7777 {
		return fieldErr("mode", fmt.Sprintf("expected at most 07777, got %04o", uint32(f.Mode)))
	}
	if f.UID == math.MaxUint32 {
		return fieldErr("uid", "4294967295 is not a valid user id")
	}
	if f.GID == math.MaxUint32 {
		return fieldErr("gid", "4294967295 is not a valid group id")
	}
	if f.Symlink != "" && (len(f.Symlink) > maxSymlinkLen || strings.ContainsRune(f.Symlink, 0)) {
		return fieldErr("symlink", fmt.Sprintf("expected a target of at most %d bytes without NUL", maxSymlinkLen))
	}
	return nil
}

// checkImagePath checks a path inside the image: absolute, clean, below /,
// and without ".." (which could escape the tree).
func checkImagePath(field, p string) error {
	switch {
	case p == "":
		return fieldErr(field, "required: an absolute path in the image, like /etc/hostname")
	case p == ".." || strings.HasPrefix(p, "../") || strings.HasSuffix(p, "/..") || strings.Contains(p, "/../"):
		return fieldErr(field, fmt.Sprintf("%q escapes the image root: \"..\" is not allowed", p))
	case !strings.HasPrefix(p, "/"):
		return fieldErr(field, fmt.Sprintf("expected an absolute path in the image, like /etc/hostname, got %q", p))
	case strings.ContainsRune(p, 0):
		return fieldErr(field, fmt.Sprintf("expected a path without NUL, got %q", p))
	case p == "/":
		return fieldErr(field, "expected a path below /, got \"/\"")
	case path.Clean(p) != p:
		return fieldErr(field, fmt.Sprintf("expected a clean path like %q, got %q", path.Clean(p), p))
	}
	return nil
}

// Validate checks the agent section.
func (a *Agent) Validate() error {
	if a.Repository == "" {
		return fieldErr("repository", "required: the repository's base URL, like https://updates.example.com/")
	}
	if err := checkURL("repository", a.Repository); err != nil {
		return err
	}
	if a.Root == "" {
		return fieldErr("root", "required: the trusted TUF root.json")
	}
	if a.Poll < minPoll {
		return fieldErr("poll", fmt.Sprintf("expected at least %s, got %s", minPoll, a.Poll))
	}
	if w := a.Wake; w != nil {
		if a.Report == "off" {
			return fieldErr("wake", `expected the fleet service: wake needs report not "off"`)
		}
		if w.Poll != 0 && w.Poll < a.Poll {
			return fieldErr("wake.poll", fmt.Sprintf("expected 0 (default %s) or at least poll (%s), got %s", config.DefaultWakePoll, a.Poll, w.Poll))
		}
	}
	switch a.Commit {
	case CommitHealth, CommitAttested:
	default:
		return fieldErr("commit", fmt.Sprintf("expected %q or %q, got %q", CommitHealth, CommitAttested, a.Commit))
	}
	if _, err := config.ParseReboot(a.Reboot); err != nil {
		return fieldErr("reboot", err.Error())
	}
	if a.Group != "" {
		if err := checkName("group", a.Group); err != nil {
			return err
		}
	}
	if a.Report != "" && a.Report != "off" {
		if err := checkURL("report", a.Report); err != nil {
			return err
		}
	}
	if l := a.Link; l.Proxy != "" {
		if err := checkURL("link.proxy", l.Proxy); err != nil {
			return err
		}
	}
	if a.Link.RateLimit < 0 || a.Link.Attempts < 0 || a.Link.RequestTimeout < 0 || a.Link.IdleTimeout < 0 {
		return fieldErr("link", "expected rate_limit, attempts and timeouts of 0 or more")
	}
	for i := range a.Health {
		if err := a.Health[i].Validate(); err != nil {
			return within(fmt.Sprintf("health[%d]", i), err)
		}
	}
	return nil
}

func checkURL(field, s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fieldErr(field, fmt.Sprintf("expected an http:// or https:// URL, got %q", s))
	}
	return nil
}

// Validate checks one health check.
func (h *HealthCheck) Validate() error {
	set := setNames("command", h.Command != "", "file", h.File != "", "url", h.URL != "")
	if err := exactlyOne("health check", []string{"command", "file", "url"}, set); err != nil {
		return err
	}
	if h.File != "" {
		if err := checkImagePath("file", h.File); err != nil {
			return err
		}
	}
	if h.URL != "" {
		if err := checkURL("url", h.URL); err != nil {
			return err
		}
	}
	if h.Timeout < 0 {
		return fieldErr("timeout", fmt.Sprintf("expected a positive duration, got %s", h.Timeout))
	}
	return nil
}

// Validate checks the partition sizes against their minimums.
func (p *Partitions) Validate() error {
	for _, c := range []struct {
		field string
		size  Size
		min   Size
		why   string
	}{
		{"esp", p.ESP, MinESP, " (FAT32)"},
		{"root", p.Root, MinRoot, ""},
		{"data", p.Data, MinData, ""},
	} {
		switch {
		case c.size < c.min:
			return fieldErr(c.field, fmt.Sprintf("expected at least %s%s, got %s", c.min, c.why, c.size))
		case c.size > maxPartition:
			return fieldErr(c.field, fmt.Sprintf("expected at most %s, got %s", maxPartition, c.size))
		case c.size%MiB != 0:
			return fieldErr(c.field, fmt.Sprintf("expected a whole number of MiB (partitions are MiB-aligned), got %d bytes", int64(c.size)))
		}
	}
	if p.DataEncryption != "" && p.DataEncryption != DataSealed {
		return fieldErr("data_encryption", fmt.Sprintf("expected %q (LUKS2, key sealed to the TPM) or nothing, got %q", DataSealed, p.DataEncryption))
	}
	return nil
}

// Validate checks the compression settings.
func (c *Compression) Validate() error {
	if c.Algorithm != DefaultAlgorithm {
		return fieldErr("algorithm", fmt.Sprintf("expected %q (the only algorithm supported), got %q", DefaultAlgorithm, c.Algorithm))
	}
	if c.Level < 1 || c.Level > maxZstdLevel {
		return fieldErr("level", fmt.Sprintf("expected a zstd level from 1 to %d, got %d", maxZstdLevel, c.Level))
	}
	if c.BlockSize < minBlockSize || c.BlockSize > maxBlockSize || c.BlockSize&(c.BlockSize-1) != 0 {
		return fieldErr("block_size", fmt.Sprintf("expected a power of two from %s to %s, got %s", minBlockSize, maxBlockSize, c.BlockSize))
	}
	return nil
}
