// Package fetch is the device's TUF client: it keeps the trusted metadata of
// the update repository up to date and streams trusted targets.
//
// Call Refresh (it polls timestamp.json with a conditional GET, so an idle
// poll is one request answered 304), then Targets to choose a release, then
// Download to stream it into a slot, verifying its length and sha256
// against the trusted metadata. Trusted metadata lives in Options.MetadataDir
// and survives restarts, so a rollback to older metadata is refused across
// Clients; the versions trusted are also kept in FloorFile, apart from the
// cache, so a torn cache does not reopen the rollback window. A Client
// serialises its calls with a mutex.
//
// Verification failures match ErrVerification; expired metadata matches
// ErrExpired (and ErrVerification). Other errors are transport or local.
package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"encoding/hex"
	"encoding/json"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"

	"github.com/plumb-os/plumb/internal/atomicfile"
)

// Options configure a Client.
type Options struct {
	// Repo is the repository's base URL; the metadata is at Repo/metadata/
	// and the targets at Repo/targets/. MetadataURL and TargetsURL, when
	// set, replace these.
	Repo        string
	MetadataURL string
	TargetsURL  string
	// MetadataDir holds the trusted metadata (root.json, timestamp.json,
	// snapshot.json, targets.json, timestamp.etag); it is created if needed.
	MetadataDir string
	// TrustedRoot is the initial root.json, used when MetadataDir has none.
	TrustedRoot []byte
	// HTTPClient does the requests (CA bundle, timeouts); nil means
	// http.DefaultClient. Neither is changed: the Client uses a copy whose
	// *http.Transport is cloned to set Link.Proxy.
	HTTPClient *http.Client
	// Log receives debug and info records; nil discards them.
	Log *slog.Logger
	// MaxMetadataSize caps the size of every metadata file; 0 keeps
	// go-tuf's defaults (512 KB root, 16 KB timestamp, 2 MB snapshot,
	// 5 MB targets).
	MaxMetadataSize int64
	// Link sets the proxy, timeouts, bandwidth cap and retries.
	Link Link
}

// Target is a trusted target.
type Target struct {
	Path   string
	Length int64
	SHA256 string // lower-case hex
	Custom json.RawMessage
}

// Client is a TUF client of one repository.
type Client struct {
	metadataURL string
	targetsURL  string
	dir         string
	initialRoot []byte
	http        doer // metadata requests (with Link.RequestTimeout)
	dl          doer // target requests
	link        Link
	limit       *rate.Limiter // Link.RateLimit; nil when uncapped
	log         *slog.Logger
	maxSize     int64
	now         func() time.Time // the clock; tests replace it
	close       func() error     // releases a local medium (local.go)

	mu sync.Mutex
	up *updater.Updater // the metadata of the last successful Refresh
	f  *tufFetcher      // up's fetcher (delegations are fetched on demand)
}

const etagFile = "timestamp.etag"

// New checks opts and returns a client. It does no I/O but creating
// MetadataDir and reading its root.json.
func New(opts Options) (*Client, error) {
	metaURL, targetsURL := opts.MetadataURL, opts.TargetsURL
	if opts.Repo != "" {
		base := strings.TrimSuffix(opts.Repo, "/")
		if metaURL == "" {
			metaURL = base + "/metadata/"
		}
		if targetsURL == "" {
			targetsURL = base + "/targets/"
		}
	}
	for _, u := range []struct{ name, v string }{{"metadata URL", metaURL}, {"targets URL", targetsURL}} {
		p, err := url.Parse(u.v)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return nil, fmt.Errorf("fetch options: %s: expected an http:// or https:// URL, got %q", u.name, u.v)
		}
	}
	if opts.MetadataDir == "" {
		return nil, fmt.Errorf("fetch options: metadata dir: expected a directory, got nothing")
	}
	if opts.MaxMetadataSize < 0 {
		return nil, fmt.Errorf("fetch options: max metadata size: expected a positive size or 0, got %d", opts.MaxMetadataSize)
	}
	if err := os.MkdirAll(opts.MetadataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating metadata dir: %w", err)
	}
	c := &Client{
		metadataURL: strings.TrimSuffix(metaURL, "/") + "/",
		targetsURL:  strings.TrimSuffix(targetsURL, "/") + "/",
		dir:         opts.MetadataDir,
		initialRoot: opts.TrustedRoot,
		log:         opts.Log,
		maxSize:     opts.MaxMetadataSize,
		now:         time.Now,
	}
	if err := c.setLink(opts); err != nil {
		return nil, err
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	root, err := c.trustedRoot()
	if err != nil {
		return nil, err
	}
	if _, err := metadata.Root().FromBytes(root); err != nil {
		return nil, fmt.Errorf("trusted root: expected a TUF root.json, got: %v", err)
	}
	return c, nil
}

// trustedRoot is the newest trusted root: MetadataDir/root.json, else the
// initial one.
func (c *Client) trustedRoot() ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(c.dir, "root.json"))
	if err == nil {
		if _, perr := metadata.Root().FromBytes(b); perr == nil {
			return b, nil
		}
		// A power cut while go-tuf wrote its cache (it does not fsync)
		// can leave it empty or torn. Start over from the root the image
		// trusts: the chain of roots is walked again.
		c.log.Warn("trusted metadata cache unreadable, starting from the initial root", "dir", c.dir, "err", "root.json is not a TUF root")
		c.dropCache()
		err = os.ErrNotExist
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("reading trusted root: %w", err)
	}
	if len(c.initialRoot) == 0 {
		return nil, fmt.Errorf("trusted root: %s has no root.json and no initial root was given", c.dir)
	}
	return c.initialRoot, nil
}

// dropCache removes the cached metadata and the timestamp's ETag, so the
// next refresh starts from the initial root with an unconditional GET. The
// rollback record (FloorFile) stays.
func (c *Client) dropCache() {
	entries, _ := os.ReadDir(c.dir)
	for _, e := range entries {
		if n := e.Name(); n != FloorFile && (strings.HasSuffix(n, ".json") || n == etagFile) {
			os.Remove(filepath.Join(c.dir, n))
		}
	}
}

// syncCache makes what go-tuf wrote to MetadataDir durable (it writes
// without fsync), so a power cut after a refresh cannot tear it.
func (c *Client) syncCache() error {
	d, err := os.Open(c.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return unix.Syncfs(int(d.Fd()))
}

func (c *Client) config(f *tufFetcher, local bool) (*config.UpdaterConfig, error) {
	root, err := c.trustedRoot()
	if err != nil {
		return nil, err
	}
	cfg, err := config.New(c.metadataURL, root)
	if err != nil {
		return nil, fmt.Errorf("tuf config: %w", err)
	}
	cfg.LocalMetadataDir = c.dir
	cfg.LocalTargetsDir = c.dir // unused: targets are streamed, never cached by go-tuf
	cfg.RemoteTargetsURL = c.targetsURL
	cfg.Fetcher = f
	cfg.UnsafeLocalMode = local
	if c.maxSize > 0 {
		cfg.RootMaxLength = min(cfg.RootMaxLength, c.maxSize)
		cfg.TimestampMaxLength = min(cfg.TimestampMaxLength, c.maxSize)
		cfg.SnapshotMaxLength = min(cfg.SnapshotMaxLength, c.maxSize)
		cfg.TargetsMaxLength = min(cfg.TargetsMaxLength, c.maxSize)
	}
	return cfg, nil
}

// Refresh brings the trusted metadata up to date. It makes a conditional
// GET of timestamp.json with the ETag remembered from the last successful
// refresh; on 304 Not Modified it only checks that the trusted metadata
// has not expired. Otherwise go-tuf's updater walks the root versions
// (N+1.root.json until 404), then timestamp, snapshot and targets.
func (c *Client) Refresh(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cfgMax := int64(16384)
	if c.maxSize > 0 {
		cfgMax = min(cfgMax, c.maxSize)
	}
	tsURL := c.metadataURL + "timestamp.json"
	etag := c.storedETag()
	body, newETag, err := get(ctx, c.http, tsURL, etag, cfgMax)
	if err != nil {
		var le *lengthError
		if errors.As(err, &le) {
			return refuse(err, "timestamp.json: %v", err)
		}
		return fmt.Errorf("refreshing metadata: %w", err)
	}
	if body == nil { // 304 Not Modified
		c.log.Debug("timestamp not modified", "etag", etag)
		if c.up == nil {
			if err := c.loadLocal(ctx); err != nil {
				if errors.Is(err, ErrVerification) {
					return err
				}
				// The cache is unreadable (torn by a power cut):
				// refresh from scratch, unconditionally.
				c.log.Warn("trusted metadata cache unreadable, refreshing from scratch", "err", err)
				c.dropCache()
				return c.refreshFull(ctx, nil, "", tsURL)
			}
		}
		return c.checkExpiry()
	}
	return c.refreshFull(ctx, body, newETag, tsURL)
}

// refreshFull runs go-tuf's refresh; body, when not nil, is the
// timestamp.json just fetched.
func (c *Client) refreshFull(ctx context.Context, body []byte, newETag, tsURL string) error {
	cached := map[string][]byte{}
	if body != nil {
		cached[tsURL] = body
	}

	f := &tufFetcher{ctx: ctx, http: c.http, cached: cached}
	cfg, err := c.config(f, false)
	if err != nil {
		return err
	}
	up, err := updater.New(cfg)
	if err != nil {
		return fmt.Errorf("loading trusted root: %w", err)
	}
	up.UnsafeSetRefTime(c.now())
	if err := up.Refresh(); err != nil {
		return explain(err, f.lastName, up, f.lastBody)
	}
	if err := c.syncCache(); err != nil {
		return fmt.Errorf("saving trusted metadata: %w", err)
	}
	if err := c.raiseFloor(up.GetTrustedMetadataSet()); err != nil {
		if errors.Is(err, ErrVerification) {
			c.dropCache() // what go-tuf just cached is older than trusted
		}
		return err
	}
	c.up, c.f = up, f
	c.storeETag(newETag)
	ts := up.GetTrustedMetadataSet()
	c.log.Info("metadata refreshed", "root", ts.Root.Signed.Version,
		"timestamp", ts.Timestamp.Signed.Version, "snapshot", ts.Snapshot.Signed.Version,
		"targets", ts.Targets[metadata.TARGETS].Signed.Version)
	return nil
}

// loadLocal verifies the metadata in MetadataDir against the trusted root
// without network access (after a 304 in a new process).
func (c *Client) loadLocal(ctx context.Context) error {
	f := &tufFetcher{ctx: ctx, http: c.http}
	cfg, err := c.config(f, true)
	if err != nil {
		return err
	}
	up, err := updater.New(cfg)
	if err != nil {
		return fmt.Errorf("loading trusted root: %w", err)
	}
	up.UnsafeSetRefTime(c.now())
	if err := up.Refresh(); err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return fmt.Errorf("loading trusted metadata: %w", err)
		}
		return explain(err, "trusted metadata in "+c.dir, up, nil)
	}
	if err := c.raiseFloor(up.GetTrustedMetadataSet()); err != nil {
		if errors.Is(err, ErrVerification) {
			c.dropCache() // the next refresh starts over, unconditionally
		}
		return err
	}
	c.up, c.f = up, f
	return nil
}

// checkExpiry refuses trusted metadata that has expired since it was
// loaded, timestamp first.
func (c *Client) checkExpiry() error {
	ts := c.up.GetTrustedMetadataSet()
	now := c.now()
	for _, r := range []struct {
		file string
		exp  time.Time
	}{
		{"timestamp.json", ts.Timestamp.Signed.Expires},
		{"snapshot.json", ts.Snapshot.Signed.Expires},
		{"targets.json", ts.Targets[metadata.TARGETS].Signed.Expires},
		{"root.json", ts.Root.Signed.Expires},
	} {
		if !now.Before(r.exp) {
			return expired(nil, r.file, r.exp)
		}
	}
	return nil
}

// storedETag is the ETag of the trusted timestamp, or "" when there is no
// trusted timestamp to fall back on.
func (c *Client) storedETag() string {
	if _, err := os.Stat(filepath.Join(c.dir, "timestamp.json")); err != nil {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(c.dir, etagFile))
	if err != nil {
		return ""
	}
	return string(bytes.TrimSpace(b))
}

func (c *Client) storeETag(etag string) {
	p := filepath.Join(c.dir, etagFile)
	if etag == "" {
		os.Remove(p)
		return
	}
	if err := atomicfile.WriteFile(p, []byte(etag+"\n"), 0o600); err != nil {
		// Not fatal: the next poll is a full GET.
		c.log.Warn("etag not stored", "err", err)
	}
}

// Targets lists the targets of the top-level targets role as of the last
// successful Refresh, sorted by path. Delegated roles' targets are not
// listed (Download finds them).
func (c *Client) Targets() ([]Target, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.up == nil {
		return nil, errors.New("listing targets: no trusted metadata: Refresh first")
	}
	var out []Target
	for p, tf := range c.up.GetTopLevelTargets() {
		t := Target{Path: p, Length: tf.Length, SHA256: hex.EncodeToString(tf.Hashes["sha256"])}
		if tf.Custom != nil {
			t.Custom = append(json.RawMessage(nil), *tf.Custom...)
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}
