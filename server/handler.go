package server

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Cache-Control values. Metadata that changes in place must be revalidated
// on every poll; versioned metadata and content-addressed targets never
// change under their name (TUF consistent snapshots).
const (
	cacheRevalidate = "no-cache"
	cacheImmutable  = "max-age=31536000, immutable"
)

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	defer func() {
		if !rec.wroteHeader {
			rec.WriteHeader(http.StatusOK)
		}
		s.requests.Add(1)
		if rec.status == http.StatusNotModified {
			s.notModified.Add(1)
		}
		s.bytesOut.Add(rec.body + rec.header)
		s.log.Info("request", "method", r.Method, "path", r.URL.Path, "status", rec.status,
			"bytes", rec.body, "duration", time.Since(start), "range", r.Header.Get("Range"),
			"remote", r.RemoteAddr)
	}()
	if s.verify != nil && s.verify.route(rec, r) {
		return
	}
	if s.fleet != nil && (r.URL.Path == "/v1" || strings.HasPrefix(r.URL.Path, "/v1/")) {
		s.fleet.route(rec, r)
		return
	}
	if s.fleet != nil && (r.URL.Path == "/ui" || strings.HasPrefix(r.URL.Path, PagePrefix)) {
		s.fleet.page(rec, r)
		return
	}
	s.serveFile(rec, r)
}

// serveFile answers GET and HEAD for one regular file under s.root. Every
// failure to find a servable file (escape, dotfile, directory, missing) is a
// plain 404 that says nothing about the directory.
func (s *Server) serveFile(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	rel, ok := repoPath(r.URL.Path)
	if !ok {
		http.NotFound(w, r)
		return
	}
	// os.Root confines the open to the repository, symlinks included.
	root, err := os.OpenRoot(s.root)
	if err != nil {
		s.log.Error("opening repository", "dir", s.root, "err", err)
		http.Error(w, "repository unavailable", http.StatusInternalServerError)
		return
	}
	defer root.Close()
	f, err := root.Open(rel)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Debug("open refused", "path", rel, "err", err)
		}
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	var etag string
	if strings.HasPrefix(rel, "metadata/") {
		etag, err = s.etags.contentETag(rel, f, fi)
		if err != nil {
			s.log.Error("hashing metadata", "path", rel, "err", err)
			http.Error(w, "reading file failed", http.StatusInternalServerError)
			return
		}
	} else {
		etag = nameETag(rel, fi)
	}
	h := w.Header()
	h.Set("ETag", etag)
	h.Set("Cache-Control", cacheControl(rel))
	if strings.HasSuffix(rel, ".json") {
		h.Set("Content-Type", "application/json")
	} else {
		h.Set("Content-Type", "application/octet-stream")
	}
	// ServeContent answers If-None-Match (304), If-Range, Range (206, 416)
	// and HEAD from the headers set above.
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

// repoPath turns a request path into a path relative to the repository, or
// reports false for anything that is not a plain file name: dot segments
// ("..", "."; also when sent as %2e%2e), dotfiles, empty segments, a trailing
// slash (directories are never listed), NUL or backslash.
func repoPath(urlPath string) (string, bool) {
	rel, ok := strings.CutPrefix(urlPath, "/")
	if !ok || rel == "" {
		return "", false
	}
	for seg := range strings.SplitSeq(rel, "/") {
		if seg == "" || seg[0] == '.' || strings.ContainsAny(seg, "\x00\\") {
			return "", false
		}
	}
	return rel, true
}

// cacheControl says how long caches may keep rel without asking again.
func cacheControl(rel string) string {
	dir, base := path.Split(rel)
	switch {
	case dir == "metadata/" && versioned(base):
		return cacheImmutable // <N>.<role>.json
	case strings.HasPrefix(dir, "targets/") && hashPrefixed(base):
		return cacheImmutable // <sha256>.<name>
	default:
		return cacheRevalidate // timestamp.json, root.json, anything else
	}
}

// versioned reports whether base is "<N>.<role>.json".
func versioned(base string) bool {
	n, rest, ok := strings.Cut(base, ".")
	if !ok || n == "" || !strings.HasSuffix(rest, ".json") || len(rest) <= len(".json") {
		return false
	}
	_, err := strconv.ParseUint(n, 10, 64)
	return err == nil
}

// hashPrefixed reports whether base is "<hex sha256 or sha512>.<name>", a
// consistent-snapshot target file name.
func hashPrefixed(base string) bool {
	h, rest, ok := strings.Cut(base, ".")
	if !ok || rest == "" || (len(h) != 64 && len(h) != 128) {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil
}

// nameETag is the strong ETag of a target: its name is content-addressed,
// and size and modification time catch a file replaced by mistake.
func nameETag(rel string, fi fs.FileInfo) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d\x00%d", rel, fi.Size(), fi.ModTime().UnixNano()))
	return `"` + hex.EncodeToString(sum[:16]) + `"`
}

// etagCache remembers the content hashes of metadata files, keyed by the
// file's identity, so that a poll does not hash timestamp.json again until
// it is replaced. Bounded: it starts over past maxETags entries.
type etagCache struct {
	mu sync.Mutex
	m  map[fileID]string
}

const maxETags = 4096

type fileID struct {
	path     string
	dev, ino uint64
	size     int64
	mtime    int64
}

// contentETag returns the strong ETag `"<sha256 of content>"` of f, which
// it leaves at offset 0.
func (c *etagCache) contentETag(rel string, f *os.File, fi fs.FileInfo) (string, error) {
	id := fileID{path: rel, size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(st.Dev), st.Ino
	}
	c.mu.Lock()
	tag, ok := c.m[id]
	c.mu.Unlock()
	if ok {
		return tag, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	tag = `"` + hex.EncodeToString(h.Sum(nil)) + `"`
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxETags {
		c.m = make(map[fileID]string)
	}
	c.m[id] = tag
	c.mu.Unlock()
	return tag, nil
}

// recorder counts what a handler sends, for Stats and the access log.
type recorder struct {
	http.ResponseWriter
	wroteHeader bool
	status      int
	header      int64 // estimated status line and header bytes
	body        int64
}

// dateHeaderLen is "Date: Mon, 02 Jan 2006 15:04:05 GMT\r\n", which
// net/http adds after the handler's headers.
const dateHeaderLen = 37

func (w *recorder) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	w.wroteHeader = true
	w.status = code
	n := len("HTTP/1.1 000 ") + len(http.StatusText(code)) + 2 + dateHeaderLen + 2
	for k, vs := range w.Header() {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}
	w.header = int64(n)
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(p)
	w.body += int64(n)
	return n, err
}

// ReadFrom keeps net/http's sendfile path for plain HTTP downloads.
func (w *recorder) ReadFrom(r io.Reader) (int64, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(writerOnly{w.ResponseWriter}, r)
	}
	w.body += n
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type writerOnly struct{ io.Writer }
