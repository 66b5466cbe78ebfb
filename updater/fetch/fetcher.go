package fetch

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path"
	"time"
)

// doer is satisfied by *http.Client.
type doer interface {
	Do(*http.Request) (*http.Response, error)
}

// tufFetcher is the fetcher.Fetcher handed to go-tuf's updater. go-tuf
// takes no context, so each fetcher is bound to the context of one call.
// It serves the timestamp already fetched by the conditional GET from
// memory, so that a refresh costs one request for it, not two. It records
// the last file fetched so that errors can name it.
type tufFetcher struct {
	ctx      context.Context
	http     doer
	cached   map[string][]byte // URL -> body, served once
	lastName string
	lastBody []byte
}

// DownloadFile implements fetcher.Fetcher: it GETs urlPath, reading at most
// maxLength bytes (metadata is small and bounded by that length).
func (f *tufFetcher) DownloadFile(urlPath string, maxLength int64, _ time.Duration) ([]byte, error) {
	f.lastName = path.Base(urlPath)
	f.lastBody = nil
	if b, ok := f.cached[urlPath]; ok {
		delete(f.cached, urlPath)
		f.lastBody = b
		return checkLength(b, maxLength)
	}
	b, _, err := get(f.ctx, f.http, urlPath, "", maxLength)
	if err != nil {
		return nil, err
	}
	f.lastBody = b
	return checkLength(b, maxLength)
}

func checkLength(b []byte, maxLength int64) ([]byte, error) {
	if int64(len(b)) > maxLength {
		return nil, &lengthError{max: maxLength}
	}
	return b, nil
}

type lengthError struct{ max int64 }

func (e *lengthError) Error() string { return fmt.Sprintf("longer than %d bytes", e.max) }

// get fetches a small file (metadata) of at most maxLength bytes. With
// etag set it makes a conditional GET and returns (nil, "", nil) on 304
// Not Modified. It returns the response's ETag.
func get(ctx context.Context, hc doer, url, etag string, maxLength int64) (body []byte, newETag string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, "", fmt.Errorf("fetching %s: %w", url, err)
	}
	minimalHeaders(req)
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, "", fmt.Errorf("fetching %s: %w", url, ctx.Err())
		}
		return nil, "", &transportError{url: url, err: err}
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotModified && etag != "":
		return nil, "", nil
	case resp.StatusCode != http.StatusOK:
		return nil, "", &transportError{url: url, status: resp.StatusCode}
	}
	if resp.ContentLength > maxLength {
		return nil, "", &lengthError{max: maxLength}
	}
	// Metadata is bounded by maxLength: reading it whole is fine.
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxLength+1))
	if err != nil {
		return nil, "", &transportError{url: url, err: err}
	}
	return b, resp.Header.Get("ETag"), nil
}
