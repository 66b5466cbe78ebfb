// Package recipe owns the YAML recipe format: the description of one OS
// release (name, version, hardware, kernel, root filesystem sources, extra
// files, agent settings, partition sizes, compression) that `plumb build`
// turns into a disk image. recipes/README.md documents every field.
//
// Load reads a recipe file; Parse decodes bytes. Both decode strictly
// (unknown keys, wrong types and duplicate keys are errors), apply
// defaults, resolve host paths against the recipe's directory, call
// Validate, and check that the host paths exist. Every error is an *Error
// whose message is one line "FILE:LINE: FIELD: MESSAGE" and which matches
// ErrInvalid.
//
// What only the build can know (a partition too small for its content, a
// Debian package that does not exist) is checked by the builder, not here.
// A Recipe is a plain value: safe to read from many goroutines.
package recipe

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"time"
)

// Recipe is one OS release.
type Recipe struct {
	Name     string `yaml:"name"`     // required, [a-z0-9][a-z0-9._-]*
	Version  string `yaml:"version"`  // required, see ValidVersion and CompareVersions
	Hardware string `yaml:"hardware"` // required, same charset as Name
	Channel  string `yaml:"channel"`  // default "stable"
	// Epoch is the time, in seconds since the Unix epoch, given to files and
	// images. The build lets SOURCE_DATE_EPOCH override it. Default 0.
	Epoch       int64       `yaml:"epoch"`
	Kernel      Kernel      `yaml:"kernel"`      // required
	Rootfs      []Source    `yaml:"rootfs"`      // required, applied in order
	Files       []File      `yaml:"files"`       // applied after Rootfs, in order
	Agent       *Agent      `yaml:"agent"`       // nil when the recipe has no agent section
	Partitions  Partitions  `yaml:"partitions"`  // defaults filled in
	Compression Compression `yaml:"compression"` // defaults filled in
	Boot        Boot        `yaml:"boot"`        // verified boot; all off by default

	// Origin is the file name the recipe was parsed from, as given to Load
	// or Parse; it prefixes error messages.
	Origin string `yaml:"-"`

	// lines maps field paths ("partitions.root", "rootfs[1].dir") to the
	// line they were found on, for error messages.
	lines map[string]int
	nulls map[string]bool // fields given as null (an empty value)
}

// Kernel says where the kernel (and its modules) come from: exactly one of
// Package, Deb and File.
type Kernel struct {
	Package string `yaml:"package"` // Debian package name, e.g. linux-image-6.1.0-56-cloud-amd64
	Deb     string `yaml:"deb"`     // host path of a .deb (absolute after Load)
	File    string `yaml:"file"`    // host path of a bare kernel image (absolute after Load)
	// ModulesDir is a host directory lib/modules/<version> that goes with
	// File. Only allowed with File.
	ModulesDir string `yaml:"modules_dir"`
	Cmdline    string `yaml:"cmdline"` // extra kernel command line, may be empty
	// Modules are the modules the initramfs loads, in order; their
	// dependencies are added by the builder. Default DefaultModules.
	Modules []string `yaml:"modules"`
}

// DefaultModules are the kernel modules the initramfs loads when the recipe
// does not list any: enough to mount the Plumb disk in QEMU and on most
// virtio machines.
var DefaultModules = []string{"virtio_pci", "virtio_blk", "virtio_net", "squashfs", "vfat", "nls_cp437", "nls_ascii", "nls_utf8", "ext4", "overlay"}

// Source is one root filesystem source: exactly one of Deb, Dir, Tar, OCI.
type Source struct {
	Deb Packages `yaml:"deb"` // Debian package names (dependencies are the builder's business)
	Dir string   `yaml:"dir"` // host directory (absolute after Load)
	Tar string   `yaml:"tar"` // host tar archive, plain, gzip, xz or zstd (absolute after Load)
	OCI string   `yaml:"oci"` // host OCI image layout directory or .tar of one (absolute after Load)
}

// Source kinds, as returned by Source.Kind.
const (
	SourceDeb = "deb"
	SourceDir = "dir"
	SourceTar = "tar"
	SourceOCI = "oci"
)

// Kind returns which of deb, dir, tar or oci the source is, or "" if none
// is set. Validate makes sure exactly one is.
func (s Source) Kind() string {
	switch {
	case len(s.Deb) > 0:
		return SourceDeb
	case s.Dir != "":
		return SourceDir
	case s.Tar != "":
		return SourceTar
	case s.OCI != "":
		return SourceOCI
	}
	return ""
}

// File is one file, directory or symlink put into the root filesystem after
// the sources: exactly one of Content, Source, Symlink and Dir.
type File struct {
	Path string `yaml:"path"` // absolute path in the image, e.g. /etc/hostname
	// Mode defaults to 0644 for files and 0755 for directories; symlinks
	// are 0777 and take no mode.
	Mode    Mode    `yaml:"mode"`
	UID     uint32  `yaml:"uid"`
	GID     uint32  `yaml:"gid"`
	Content *string `yaml:"content"` // inline content; nil when not given ("" is an empty file)
	Source  string  `yaml:"source"`  // host file to copy (absolute after Load)
	Symlink string  `yaml:"symlink"` // symlink target, verbatim
	Dir     bool    `yaml:"dir"`     // an (empty) directory
}

// File kinds, as returned by File.Kind.
const (
	FileContent = "content"
	FileSource  = "source"
	FileSymlink = "symlink"
	FileDir     = "dir"
)

// Kind returns which of content, source, symlink or dir the entry is, or ""
// if none is set. Validate makes sure exactly one is.
func (f File) Kind() string {
	switch {
	case f.Content != nil:
		return FileContent
	case f.Source != "":
		return FileSource
	case f.Symlink != "":
		return FileSymlink
	case f.Dir:
		return FileDir
	}
	return ""
}

// Agent configures plumbd on the device.
type Agent struct {
	Repository string `yaml:"repository"` // base URL of the TUF repository, http or https
	Root       string `yaml:"root"`       // host path of the trusted TUF root.json (absolute after Load)
	CA         string `yaml:"ca"`         // host path of a PEM CA bundle (absolute after Load), optional
	// Poll is the interval between update checks, at least 1s. Default 5m.
	Poll time.Duration `yaml:"poll"`
	// Commit is when a trial slot is committed: CommitHealth (after the
	// health checks pass) or CommitAttested (after the server accepted
	// the attestation too). Default CommitHealth.
	Commit string `yaml:"commit"`
	// Reboot is when a device reboots into an installed release: "now"
	// (default), "manual", or a daily window "HH:MM-HH:MM" (UTC).
	Reboot string `yaml:"reboot"`
	// Report is the base URL devices POST their status to
	// (<report>/v1/devices/<id>/status): "" means the repository's URL,
	// "off" sends none.
	Report string        `yaml:"report"`
	Health []HealthCheck `yaml:"health"` // extra checks after a trial boot
	Link   Link          `yaml:"link"`   // the network to the repository
	// Workloads makes plumbd run the containers of a group's workload
	// manifest through containerd; nil: none.
	Workloads *Workloads `yaml:"workloads"`
	// JoinToken is the host path of a file holding the organization's
	// join token (made by `plumb serve` or `plumb fleet org create`); the
	// builder puts the token in the agent config. Optional: without one
	// the fleet service lists the device as pending.
	JoinToken string `yaml:"join_token"`
	// Group is the device group rollout waves target (plumb rollout set
	// --group); "" none.
	Group string `yaml:"group"`

	// Field operations (field.go): when a release installs, the device's
	// group for approvals, hooks, and how long an application lock may
	// defer an update.
	Install     string        `yaml:"install"`       // "auto" (default), "download-only" or "HH:MM-HH:MM" (UTC)
	Hooks       Hooks         `yaml:"hooks"`         // executables run around an update
	LockMaxHold time.Duration `yaml:"lock_max_hold"` // default 1h

	// Wake turns on the optional wake-up channel (docs/wake.md); nil:
	// the device only polls.
	Wake *Wake `yaml:"wake"`
}

// Wake configures the agent's wake-up channel to the fleet service.
type Wake struct {
	// Poll is the time between polls while the channel is up; 0 means
	// config.DefaultWakePoll (1h). At least the agent's poll.
	Poll time.Duration `yaml:"poll"`
}

// Workloads names the device's workload group and how plumbd reaches
// containerd.
type Workloads struct {
	Group      string `yaml:"group"`      // the manifest is apps/<group>/workloads.json
	Containerd string `yaml:"containerd"` // socket; default /run/containerd/containerd.sock
	Namespace  string `yaml:"namespace"`  // containerd namespace; default plumb
	DataDir    string `yaml:"data_dir"`   // device directory holding mount sources; default /data/apps
}

// Commit policies.
const (
	CommitHealth   = "health"
	CommitAttested = "attested"
)

// Default agent settings.
const (
	DefaultPoll          = 5 * time.Minute
	DefaultHealthTimeout = 30 * time.Second
)

// Link tunes the device's connection to the repository. Zero values keep
// the agent's defaults: proxy from HTTPS_PROXY, no bandwidth cap, 1m
// timeouts, 5 attempts per download.
type Link struct {
	Proxy          string        `yaml:"proxy"`           // http(s) proxy URL
	RateLimit      Size          `yaml:"rate_limit"`      // bytes per second, like "256KiB"
	RequestTimeout time.Duration `yaml:"request_timeout"` // each metadata request
	IdleTimeout    time.Duration `yaml:"idle_timeout"`    // no byte for this long: retry the download
	Attempts       int           `yaml:"attempts"`        // tries per download
}

// HealthCheck is one check after a trial boot: exactly one of Command, File
// and URL.
type HealthCheck struct {
	Command string `yaml:"command"` // run with /bin/sh -c; healthy if it exits 0
	File    string `yaml:"file"`    // absolute path on the device; healthy if it exists
	URL     string `yaml:"url"`     // http(s) URL; healthy on a 2xx answer
	// Timeout bounds the check (and, for File, how long to wait for the
	// file to appear). Default 30s.
	Timeout time.Duration `yaml:"timeout"`
}

// Kind returns which of command, file or url the check is, or "".
func (h HealthCheck) Kind() string {
	switch {
	case h.Command != "":
		return "command"
	case h.File != "":
		return "file"
	case h.URL != "":
		return "url"
	}
	return ""
}

// Partitions are the partition sizes of the disk image. Root is the size of
// each of the two root slots.
type Partitions struct {
	ESP  Size `yaml:"esp"`
	Root Size `yaml:"root"`
	Data Size `yaml:"data"`
	// DataEncryption "luks2-tpm" makes /data a LUKS2 volume whose key the
	// device seals to its TPM on the first boot (format/datapart,
	// docs/verified-boot.md). Requires boot.verity and a Secure Boot key.
	DataEncryption string `yaml:"data_encryption"`
}

// DataSealed is the one DataEncryption (format/datapart.Sealed).
const DataSealed = "luks2-tpm"

// Default and minimum partition sizes.
const (
	DefaultESP  = 128 * MiB
	DefaultRoot = 512 * MiB
	DefaultData = 256 * MiB
	MinESP      = 33 * MiB // smallest real FAT32 (65525 clusters of 512 bytes)
	MinRoot     = 8 * MiB
	MinData     = 32 * MiB
)

// Boot configures verified boot (docs/verified-boot.md).
type Boot struct {
	// Verity maps the root slots through dm-verity: the builder writes the
	// hash tree after the squashfs and puts its root hash on the kernel
	// command line and into the release facts (format/verity).
	Verity bool `yaml:"verity"`
	// SecureBoot, when set, signs systemd-boot and one Unified Kernel
	// Image per slot with the owner's db key. Requires Verity.
	SecureBoot *SecureBoot `yaml:"secure_boot"`
}

// SecureBoot names the owner's Secure Boot signing key (made by
// `plumb keys secureboot`).
type SecureBoot struct {
	Key  string `yaml:"key"`  // host path of the PEM private key (absolute after Load)
	Cert string `yaml:"cert"` // host path of its PEM certificate, enrolled in db (absolute after Load)
	// PK and KEK, optional, are host paths of the owner's PEM platform and
	// key-exchange certificates: with them the release's reference values
	// require them in PCR 7 too (docs/attestation.md).
	PK  string `yaml:"pk"`
	KEK string `yaml:"kek"`
}

// Validate checks the verified boot settings.
func (b *Boot) Validate() error {
	if b.SecureBoot != nil {
		if !b.Verity {
			return fieldErr("secure_boot", "expected verity: true with it (a signed kernel must not mount an unverified root)")
		}
		if b.SecureBoot.Key == "" || b.SecureBoot.Cert == "" {
			return fieldErr("secure_boot", "expected key and cert (PEM files, see plumb keys secureboot)")
		}
	}
	return nil
}

// Compression configures the root filesystem's squashfs compression.
type Compression struct {
	Algorithm string `yaml:"algorithm"`  // only "zstd"; default "zstd"
	Level     int    `yaml:"level"`      // 1..22, default 15
	BlockSize Size   `yaml:"block_size"` // squashfs block size, a power of two from 4KiB to 1MiB; default 128KiB
}

// Default compression settings.
const (
	DefaultAlgorithm = "zstd"
	DefaultLevel     = 15
	DefaultBlockSize = 128 * KiB
)

// maxRecipeSize bounds what Load reads: a recipe is configuration, and a
// larger file is a mistake (a disk image passed as recipe, say).
const maxRecipeSize = 4 << 20

// Load reads the recipe file at path, resolves its relative host paths
// against the file's directory, applies defaults, validates it and checks
// that the host paths it names exist.
func Load(path string) (*Recipe, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read recipe: %v", pathErrText(err)), Err: err}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRecipeSize+1))
	if err != nil {
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read recipe: %v", pathErrText(err)), Err: err}
	}
	if len(data) > maxRecipeSize {
		return nil, &Error{File: path, Msg: fmt.Sprintf("recipe is larger than %s; is this the right file?", Size(maxRecipeSize))}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("resolving recipe path %s: %w", path, err)
	}
	return Parse(path, data, filepath.Dir(abs))
}

// Parse decodes the recipe in data; name is used in error messages (the
// file name). Relative host paths are resolved against baseDir, and those
// paths must then exist. With an empty baseDir, host paths are left as
// written and not checked (for tests and tools that only read the fields).
func Parse(name string, data []byte, baseDir string) (*Recipe, error) {
	root, err := parseDocument(name, data)
	if err != nil {
		return nil, err
	}
	if root == nil {
		return nil, &Error{File: name, Line: 1, Msg: "empty recipe: expected a mapping with name, version, hardware, kernel and rootfs"}
	}
	r := &Recipe{Origin: name}
	d := &decoder{file: name, lines: map[string]int{}, nulls: map[string]bool{}}
	if err := d.decodeStruct(root, "", reflect.ValueOf(r).Elem()); err != nil {
		return nil, err
	}
	d.lines[""] = root.Line
	r.lines, r.nulls = d.lines, d.nulls
	r.applyDefaults()
	if baseDir != "" {
		r.resolvePaths(baseDir)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if baseDir != "" {
		if err := r.checkHostPaths(); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// has reports whether the recipe text set field to a value (not null).
func (r *Recipe) has(field string) bool {
	_, ok := r.lines[field]
	return ok && !r.nulls[field]
}

// applyDefaults fills what the recipe left out.
func (r *Recipe) applyDefaults() {
	if r.Channel == "" {
		r.Channel = "stable"
	}
	if r.Kernel.Modules == nil {
		r.Kernel.Modules = append([]string(nil), DefaultModules...)
	}
	for i := range r.Files {
		f := &r.Files[i]
		if r.has(fmt.Sprintf("files[%d].mode", i)) {
			continue
		}
		switch f.Kind() {
		case FileDir:
			f.Mode = 0o755
		case FileSymlink:
			f.Mode = 0o777
		default:
			f.Mode = 0o644
		}
	}
	if a := r.Agent; a != nil {
		if a.Poll == 0 {
			a.Poll = DefaultPoll
		}
		if a.Commit == "" {
			a.Commit = CommitHealth
		}
		for i := range a.Health {
			if a.Health[i].Timeout == 0 {
				a.Health[i].Timeout = DefaultHealthTimeout
			}
		}
	}
	p := &r.Partitions
	if !r.has("partitions.esp") {
		p.ESP = DefaultESP
	}
	if !r.has("partitions.root") {
		p.Root = DefaultRoot
	}
	if !r.has("partitions.data") {
		p.Data = DefaultData
	}
	c := &r.Compression
	if c.Algorithm == "" {
		c.Algorithm = DefaultAlgorithm
	}
	if !r.has("compression.level") {
		c.Level = DefaultLevel
	}
	if !r.has("compression.block_size") {
		c.BlockSize = DefaultBlockSize
	}
}

// hostPath is one host path field of the recipe, for resolution and checks.
type hostPath struct {
	field string
	path  *string
	want  string // "file", "dir" or "any"
}

// hostPaths lists every host path the recipe names.
func (r *Recipe) hostPaths() []hostPath {
	var out []hostPath
	add := func(field string, p *string, want string) {
		if *p != "" {
			out = append(out, hostPath{field, p, want})
		}
	}
	add("kernel.deb", &r.Kernel.Deb, "file")
	add("kernel.file", &r.Kernel.File, "file")
	add("kernel.modules_dir", &r.Kernel.ModulesDir, "dir")
	for i := range r.Rootfs {
		s := &r.Rootfs[i]
		add(fmt.Sprintf("rootfs[%d].dir", i), &s.Dir, "dir")
		add(fmt.Sprintf("rootfs[%d].tar", i), &s.Tar, "file")
		add(fmt.Sprintf("rootfs[%d].oci", i), &s.OCI, "any")
	}
	for i := range r.Files {
		add(fmt.Sprintf("files[%d].source", i), &r.Files[i].Source, "file")
	}
	if sb := r.Boot.SecureBoot; sb != nil {
		add("boot.secure_boot.key", &sb.Key, "file")
		add("boot.secure_boot.cert", &sb.Cert, "file")
		add("boot.secure_boot.pk", &sb.PK, "file")
		add("boot.secure_boot.kek", &sb.KEK, "file")
	}
	if a := r.Agent; a != nil {
		add("agent.root", &a.Root, "file")
		add("agent.ca", &a.CA, "file")
		add("agent.join_token", &a.JoinToken, "file")
	}
	return out
}

// resolvePaths makes every relative host path absolute against baseDir.
func (r *Recipe) resolvePaths(baseDir string) {
	for _, h := range r.hostPaths() {
		if !filepath.IsAbs(*h.path) {
			*h.path = filepath.Join(baseDir, *h.path)
		}
	}
}

// checkHostPaths makes sure every host path exists and has the right type.
func (r *Recipe) checkHostPaths() error {
	for _, h := range r.hostPaths() {
		fi, err := os.Stat(*h.path)
		switch {
		case err != nil:
			return r.at(&Error{Field: h.field, Msg: pathErrText(err), Err: err})
		case h.want == "dir" && !fi.IsDir():
			return r.at(fieldErr(h.field, fmt.Sprintf("expected a directory, got a file: %s", *h.path)))
		case h.want == "file" && !fi.Mode().IsRegular():
			return r.at(fieldErr(h.field, fmt.Sprintf("expected a regular file, got %s: %s", fileType(fi), *h.path)))
		}
	}
	return nil
}

// pathErrText says what went wrong with a path in a few words and names it.
func pathErrText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return "no such file or directory: " + pe.Path
		case errors.Is(err, fs.ErrPermission):
			return "permission denied: " + pe.Path
		}
		return pe.Err.Error() + ": " + pe.Path
	}
	return err.Error()
}

func fileType(fi fs.FileInfo) string {
	if fi.IsDir() {
		return "a directory"
	}
	return "a special file"
}

// at fills the file and line of e from the recipe's origin and the line of
// its field, or of the nearest enclosing field the recipe text has.
func (r *Recipe) at(err error) error {
	var e *Error
	if !errors.As(err, &e) {
		return err
	}
	c := *e
	c.File = r.Origin
	if c.Line == 0 && r.lines != nil {
		c.Line = r.lineOf(c.Field)
	}
	return &c
}

// lineOf returns the line of field or of its nearest recorded parent.
func (r *Recipe) lineOf(field string) int {
	for {
		if l, ok := r.lines[field]; ok {
			return l
		}
		if field == "" {
			return 0
		}
		field = parentField(field)
	}
}

// parentField strips the last ".key" or "[i]" from a field path.
func parentField(f string) string {
	for i := len(f) - 1; i >= 0; i-- {
		switch f[i] {
		case '.':
			return f[:i]
		case '[':
			return f[:i]
		}
	}
	return ""
}
