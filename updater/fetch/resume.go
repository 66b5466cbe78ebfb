package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"time"
)

// DownloadFile streams the trusted target targetPath into f from offset 0,
// resuming an interrupted download, and returns how many bytes of the
// target f now holds from offset 0: the caller persists that count and
// passes it as done to the next call after a failure.
//
// done is the count of bytes an earlier call wrote. They are not trusted:
// DownloadFile reads and hashes them again, then asks the server for the
// rest with "Range: bytes=done-". A server that ignores the Range (200
// with the whole body) makes it start again from offset 0; so does a done
// larger than the trusted length or than f. Within the call, transport
// failures (connection reset or cut, idle timeout, 5xx, 408, 429) are
// retried with backoff up to Link.Attempts tries, each resuming from what
// was written so far.
//
// The result is verified against the trusted length and sha256. When it
// does not match and the call resumed a prefix it did not write itself, the
// prefix may be what is wrong (a torn write, a bad block): DownloadFile
// then downloads the whole target once more from offset 0, and only a
// second mismatch is a refusal. Refusals (ErrVerification: a sha256
// mismatch, a body longer than trusted) are never retried. progress, when
// not nil, sees every byte written to f (a restart writes bytes again).
// f is written with WriteAt and neither synced nor truncated.
func (c *Client) DownloadFile(ctx context.Context, targetPath string, f *os.File, done int64, progress io.Writer) (int64, error) {
	tf, want, u, err := c.targetInfo(ctx, targetPath)
	if err != nil {
		return 0, err
	}
	if done < 0 {
		return 0, fmt.Errorf("target %s: bytes already written: expected a count >= 0, got %d", targetPath, done)
	}
	d := &resumable{
		c: c, ctx: ctx, name: targetPath, url: u, length: tf.Length, want: want,
		f: f, progress: progress, h: sha256.New(),
	}
	if done > tf.Length {
		c.log.Warn("download restarts: more bytes on disk than the target has", "target", targetPath, "done", done, "length", tf.Length)
		done = 0
	}
	if done > 0 {
		ok, err := d.rehash(done)
		if err != nil {
			return 0, err
		}
		if ok {
			d.done, d.prefix = done, done
		} else {
			d.restart()
			c.log.Warn("download restarts: the file is shorter than the bytes said written", "target", targetPath, "done", done)
		}
	}
	c.log.Debug("downloading target", "target", targetPath, "url", u, "length", tf.Length, "resume", d.done)
	return d.run()
}

// resumable is the state of one DownloadFile call.
type resumable struct {
	c        *Client
	ctx      context.Context
	name     string // the target path
	url      string
	length   int64
	want     string // sha256, hex
	f        *os.File
	progress io.Writer

	h       hash.Hash // of f[0:done]
	done    int64     // bytes of the target in f from offset 0
	prefix  int64     // of done, bytes this call did not write (re-hashed)
	etag    string    // strong ETag of the target, once seen
	noRange bool      // the server's ranges are broken: ask for everything
}

// rehash hashes f[0:n]; false when f is shorter.
func (d *resumable) rehash(n int64) (bool, error) {
	buf := make([]byte, copyBuffer)
	r := io.NewSectionReader(d.f, 0, n)
	for off := int64(0); off < n; {
		if err := d.ctx.Err(); err != nil {
			return false, fmt.Errorf("target %s: %w", d.name, err)
		}
		k, err := r.Read(buf)
		d.h.Write(buf[:k])
		off += int64(k)
		if err == io.EOF {
			return off == n, nil
		}
		if err != nil {
			return false, fmt.Errorf("target %s: reading the bytes already written: %w", d.name, err)
		}
	}
	return true, nil
}

// restart forgets what f holds.
func (d *resumable) restart() {
	d.done, d.prefix = 0, 0
	d.h.Reset()
}

// run tries until the target is complete and verified, a refusal, a local
// error, or the last attempt.
func (d *resumable) run() (int64, error) {
	attempts := d.c.link.Attempts
	var last error
	for try := 1; try <= attempts; try++ {
		if try > 1 {
			wait := backoff(d.c.link.RetryBase, d.c.link.RetryMax, try-1)
			d.c.log.Info("download retry", "target", d.name, "attempt", try, "of", attempts, "resume", d.done, "wait", wait, "err", last)
			select {
			case <-d.ctx.Done():
				return d.done, fmt.Errorf("target %s: %w", d.name, d.ctx.Err())
			case <-time.After(wait):
			}
		}
		err := d.attempt()
		if err == nil {
			err = d.verify()
			var mm *mismatch
			if errors.As(err, &mm) && d.prefix > 0 {
				// The resumed prefix may be what is wrong: once more, whole.
				d.c.log.Warn("download restarts: sha256 mismatch after resuming", "target", d.name, "prefix", d.prefix)
				d.restart()
				d.noRange = true
				try--
				continue
			}
			if err == nil {
				d.c.log.Info("target downloaded", "target", d.name, "bytes", d.done, "sha256", d.want)
			}
			return d.done, err
		}
		if d.ctx.Err() != nil {
			return d.done, fmt.Errorf("target %s: %w", d.name, d.ctx.Err())
		}
		var rt *retryable
		if !errors.As(err, &rt) {
			return d.done, err
		}
		last = rt.err
	}
	tries := "attempts"
	if attempts == 1 {
		tries = "attempt"
	}
	return d.done, fmt.Errorf("target %s: giving up after %d %s, %d of %d bytes written: %w", d.name, attempts, tries, d.done, d.length, last)
}

// retryable marks a transport failure worth another attempt.
type retryable struct{ err error }

func (r *retryable) Error() string { return r.err.Error() }
func (r *retryable) Unwrap() error { return r.err }

// mismatch is the sha256 refusal, which after a resume warrants one
// download from scratch.
type mismatch struct{ error }

func (m *mismatch) Unwrap() error { return m.error }

// backoff is the wait before retry n (1-based): base·2^(n-1) capped at
// hi, of which the upper half is kept and the lower half drawn at random.
func backoff(base, hi time.Duration, n int) time.Duration {
	d := hi
	if n < 32 && base<<(n-1) > 0 && base<<(n-1) < hi {
		d = base << (n - 1)
	}
	return d/2 + rand.N(d/2+1)
}

// attempt makes one request and writes what it gets; nil means done ==
// length and the body had no more bytes.
func (d *resumable) attempt() error {
	if d.done == d.length {
		return nil // all re-hashed; verify decides
	}
	header := http.Header{}
	if d.done > 0 && !d.noRange {
		header.Set("Range", fmt.Sprintf("bytes=%d-", d.done))
		if d.etag != "" {
			header.Set("If-Range", d.etag)
		}
	}
	resp, body, stop, err := d.c.openTarget(d.ctx, d.url, header)
	if err != nil {
		var pe *proxyError
		if errors.As(err, &pe) && pe.status != 0 {
			return fmt.Errorf("target %s: %w", d.name, &transportError{url: d.url, err: err})
		}
		return &retryable{fmt.Errorf("target %s: %w", d.name, &transportError{url: d.url, err: err})}
	}
	defer stop()
	if et := resp.Header.Get("ETag"); et != "" && !strings.HasPrefix(et, "W/") {
		d.etag = et
	}
	switch resp.StatusCode {
	case http.StatusOK:
		if d.done > 0 {
			d.c.log.Info("download restarts: the server sent the whole target", "target", d.name, "had", d.done)
			d.restart()
		}
		if resp.ContentLength > d.length {
			return refuse(nil, "target %s: server sends %d bytes, trusted length is %d", d.name, resp.ContentLength, d.length)
		}
	case http.StatusPartialContent:
		var first, lastB int64
		var total string
		cr := resp.Header.Get("Content-Range")
		if _, err := fmt.Sscanf(cr, "bytes %d-%d/%s", &first, &lastB, &total); err != nil || first != d.done {
			d.noRange = true
			return &retryable{fmt.Errorf("target %s: asked for bytes from %d, got Content-Range %q", d.name, d.done, cr)}
		}
		if total != "*" && total != fmt.Sprint(d.length) {
			return refuse(nil, "target %s: server says it has %s bytes, trusted length is %d", d.name, total, d.length)
		}
	case http.StatusRequestedRangeNotSatisfiable:
		d.noRange = true
		return &retryable{fmt.Errorf("target %s: %w", d.name, &transportError{url: d.url, status: resp.StatusCode})}
	default:
		err := fmt.Errorf("target %s: %w", d.name, &transportError{url: d.url, status: resp.StatusCode})
		if s := resp.StatusCode; s >= 500 || s == http.StatusRequestTimeout || s == http.StatusTooManyRequests {
			return &retryable{err}
		}
		return err
	}
	return d.copy(body)
}

// copy writes body at f[done:] until length, hashing as it goes, then
// checks that the body has no more bytes.
func (d *resumable) copy(body io.Reader) error {
	buf := make([]byte, copyBuffer)
	for d.done < d.length {
		k, rerr := body.Read(buf[:min(int64(len(buf)), d.length-d.done)])
		if k > 0 {
			n, werr := d.f.WriteAt(buf[:k], d.done)
			d.h.Write(buf[:n])
			if d.progress != nil {
				d.progress.Write(buf[:n])
			}
			d.done += int64(n)
			if werr != nil {
				return fmt.Errorf("target %s: writing at %d: %w", d.name, d.done, werr)
			}
		}
		if rerr == io.EOF {
			if d.done < d.length {
				return &retryable{fmt.Errorf("target %s: connection ended after %d of %d bytes: %w", d.name, d.done, d.length, io.ErrUnexpectedEOF)}
			}
			break
		}
		if rerr != nil {
			if d.ctx.Err() != nil {
				return fmt.Errorf("target %s: %w", d.name, d.ctx.Err())
			}
			return &retryable{fmt.Errorf("target %s: after %d of %d bytes: %w", d.name, d.done, d.length, rerr)}
		}
	}
	// One more byte than recorded is a refusal (endless data attack).
	var extra [1]byte
	if k, _ := io.ReadFull(body, extra[:]); k > 0 {
		return refuse(nil, "target %s: longer than its trusted length %d", d.name, d.length)
	}
	return nil
}

// verify compares the hash of f[0:length] with the trusted sha256.
func (d *resumable) verify() error {
	if got := hex.EncodeToString(d.h.Sum(nil)); got != d.want {
		return &mismatch{refuse(nil, "target %s: sha256 mismatch: expected %s, got %s", d.name, d.want, got)}
	}
	return nil
}
