package fetch

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"time"
)

// localHost is the host name of the URLs a local client asks its file
// transport for; it never reaches a network.
const localHost = "media.plumb.invalid"

// LocalOptions configure a client of a repository copy in a directory (a
// mounted update stick: plumb export's layout, metadata/ and targets/).
type LocalOptions struct {
	// Dir is the copy's top directory. Nothing outside it is read: paths
	// are resolved with os.Root, so links out of it fail.
	Dir string
	// MetadataDir and TrustedRoot are the device's, as for the network
	// client: the same trusted metadata, so a stick can never roll it back.
	MetadataDir string
	TrustedRoot []byte
	// RefTime is the time metadata expiry is judged at (docs/offline.md):
	// the last time the device verified fresh metadata online, not the
	// wall clock, which an offline device cannot trust. Zero checks only
	// signatures, versions and hashes.
	RefTime time.Time
	Log     *slog.Logger
	// MaxMetadataSize caps every metadata file, as Options.MaxMetadataSize.
	MaxMetadataSize int64
}

// NewLocal returns a client that reads the repository copy in opts.Dir
// through the same go-tuf verification as the network client: the
// device's trusted root and metadata directory, signatures, thresholds,
// version rollback checks, then length and sha256 of every target.
func NewLocal(opts LocalOptions) (*Client, error) {
	root, err := os.OpenRoot(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("update medium %s: %w", opts.Dir, err)
	}
	c, err := New(Options{
		Repo:            "http://" + localHost + "/",
		MetadataDir:     opts.MetadataDir,
		TrustedRoot:     opts.TrustedRoot,
		HTTPClient:      &http.Client{Transport: &fileTransport{root: root}},
		MaxMetadataSize: opts.MaxMetadataSize,
		Log:             opts.Log,
		Link:            Link{Attempts: 1},
	})
	if err != nil {
		root.Close()
		return nil, err
	}
	ref := opts.RefTime
	c.now = func() time.Time { return ref }
	c.close = root.Close
	return c, nil
}

// Close releases what the client holds open: for a local client, the
// medium's directory (so that it can be unmounted). Network clients hold
// nothing.
func (c *Client) Close() error {
	if c.close == nil {
		return nil
	}
	return c.close()
}

// fileTransport answers GETs for http://media.plumb.invalid/<path> with the
// file <path> under root (404 when it does not exist). It ignores Range
// (a full 200 answer, which the download code accepts).
type fileTransport struct{ root *os.Root }

func (t *fileTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		req.Body.Close()
	}
	if req.URL.Host != localHost || req.Method != http.MethodGet {
		return nil, fmt.Errorf("local medium: %s %s: expected GET of %s", req.Method, req.URL, localHost)
	}
	p, err := url.PathUnescape(req.URL.EscapedPath())
	if err != nil {
		return nil, err
	}
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	resp := &http.Response{
		StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, Request: req,
	}
	f, err := t.root.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			resp.StatusCode, resp.Status = http.StatusNotFound, "404 Not Found"
			resp.Body = io.NopCloser(bytes.NewReader(nil))
			return resp, nil
		}
		return nil, fmt.Errorf("local medium: %w", err)
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("local medium: %s: expected a regular file", p)
	}
	resp.ContentLength = fi.Size()
	resp.Body = f
	return resp, nil
}
