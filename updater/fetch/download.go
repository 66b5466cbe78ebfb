package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"
)

// copyBuffer is the size of the copy buffer: large enough to keep syscalls
// few, small enough not to matter on a device.
const copyBuffer = 256 << 10

// Download streams the trusted target targetPath into w and returns the
// number of bytes written. Its length and sha256 come from the metadata of
// the last successful Refresh; the bytes come from the targets URL with
// consistent-snapshot naming (<dir>/<sha256>.<name>). progress, when not
// nil, sees every byte written. At most the trusted length is written to w;
// more bytes than that, or a different sha256, fail with ErrVerification,
// and w's content must then be discarded. Nothing is buffered beyond a
// fixed copy buffer.
func (c *Client) Download(ctx context.Context, targetPath string, w io.Writer, progress io.Writer) (int64, error) {
	tf, want, u, err := c.targetInfo(ctx, targetPath)
	if err != nil {
		return 0, err
	}
	c.log.Debug("downloading target", "target", targetPath, "url", u, "length", tf.Length)

	resp, body, stop, err := c.openTarget(ctx, u, nil)
	if err != nil {
		if ctx.Err() != nil {
			return 0, fmt.Errorf("target %s: %w", targetPath, ctx.Err())
		}
		return 0, fmt.Errorf("target %s: %w", targetPath, &transportError{url: u, err: err})
	}
	defer stop()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("target %s: %w", targetPath, &transportError{url: u, status: resp.StatusCode})
	}
	if resp.ContentLength > tf.Length {
		return 0, refuse(nil, "target %s: server sends %d bytes, trusted length is %d", targetPath, resp.ContentLength, tf.Length)
	}

	h := sha256.New()
	dst := io.MultiWriter(w, h)
	if progress != nil {
		dst = io.MultiWriter(w, h, progress)
	}
	n, err := io.CopyBuffer(dst, io.LimitReader(body, tf.Length), make([]byte, copyBuffer))
	if err != nil {
		if ctx.Err() != nil {
			return n, fmt.Errorf("target %s: %w", targetPath, ctx.Err())
		}
		return n, fmt.Errorf("target %s: after %d of %d bytes: %w", targetPath, n, tf.Length, err)
	}
	if n < tf.Length {
		return n, fmt.Errorf("target %s: connection ended after %d of %d bytes: %w", targetPath, n, tf.Length, io.ErrUnexpectedEOF)
	}
	// One more byte than recorded is a refusal (endless data attack).
	var extra [1]byte
	if k, _ := io.ReadFull(body, extra[:]); k > 0 {
		return n, refuse(nil, "target %s: longer than its trusted length %d", targetPath, tf.Length)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return n, refuse(nil, "target %s: sha256 mismatch: expected %s, got %s", targetPath, want, got)
	}
	c.log.Info("target downloaded", "target", targetPath, "bytes", n, "sha256", want)
	return n, nil
}

// targetInfo looks targetPath up in the trusted metadata of the last
// Refresh: its trusted facts, its sha256 in hex and its URL.
func (c *Client) targetInfo(ctx context.Context, targetPath string) (tf *metadata.TargetFiles, want, u string, err error) {
	c.mu.Lock()
	up, f := c.up, c.f
	if f != nil {
		f.ctx = ctx // delegated metadata may be fetched now
	}
	var roleErr error
	if up != nil {
		tf, err = up.GetTargetInfo(targetPath)
		if err == nil {
			roleErr = checkSigner(up, targetPath)
		}
		if err == nil && roleErr == nil {
			// Delegated roles are loaded on demand: their versions
			// join the rollback record now.
			roleErr = c.raiseFloor(up.GetTrustedMetadataSet())
		}
	}
	c.mu.Unlock()
	if up == nil {
		return nil, "", "", fmt.Errorf("target %s: no trusted metadata: Refresh first", targetPath)
	}
	if err != nil {
		if strings.HasSuffix(err.Error(), "not found") && !errors.Is(err, &metadata.ErrRepository{}) {
			return nil, "", "", fmt.Errorf("target %s: %w", targetPath, ErrNotFound)
		}
		return nil, "", "", explain(err, f.lastName, up, f.lastBody)
	}
	if roleErr != nil {
		return nil, "", "", roleErr
	}
	want = hex.EncodeToString(tf.Hashes["sha256"])
	if len(want) != sha256.Size*2 {
		return nil, "", "", refuse(nil, "target %s: trusted metadata has no sha256 for it", targetPath)
	}
	u = c.targetURL(targetPath, want, up.GetTrustedMetadataSet().Root.Signed.ConsistentSnapshot)
	return tf, want, u, nil
}

// targetURL is where targetPath is served: with consistent snapshots the
// file name carries its sha256 as a prefix.
func (c *Client) targetURL(targetPath, sha string, consistent bool) string {
	parts := strings.Split(targetPath, "/")
	if consistent {
		parts[len(parts)-1] = sha + "." + parts[len(parts)-1]
	}
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return c.targetsURL + strings.Join(parts, "/")
}

// Delegation policy: target paths under AppsPrefix are signed by the
// delegated role AppsRole (the application owner's keys) and nothing
// else; every other target by the top-level targets role (the OS keys).
// go-tuf's walk finds a target in the first role that lists it, top-level
// targets first, and the delegation's paths keep apps from signing other
// paths; checkSigner adds the other direction, so neither key set can sign
// for the other.
const (
	AppsPrefix = "apps/"
	AppsRole   = "apps"
)

// checkSigner refuses a target signed by the wrong role.
func checkSigner(up *updater.Updater, targetPath string) error {
	ts := up.GetTrustedMetadataSet()
	_, inTop := ts.Targets[metadata.TARGETS].Signed.Targets[targetPath]
	if strings.HasPrefix(targetPath, AppsPrefix) {
		if inTop {
			return refuse(nil, "target %s: signed by the targets role (the OS keys); targets under %s must be signed by the delegated role %s", targetPath, AppsPrefix, AppsRole)
		}
		apps := ts.Targets[AppsRole]
		if apps == nil {
			return refuse(nil, "target %s: not signed by the delegated role %s", targetPath, AppsRole)
		}
		if _, ok := apps.Signed.Targets[targetPath]; !ok {
			return refuse(nil, "target %s: not signed by the delegated role %s", targetPath, AppsRole)
		}
		return nil
	}
	if !inTop {
		return refuse(nil, "target %s: not signed by the targets role (a delegated role may sign only %s targets)", targetPath, AppsPrefix)
	}
	return nil
}

// Lookup returns the trusted facts of targetPath, walking delegations, as
// of the last successful Refresh. It refuses a target signed by the wrong
// role (see AppsPrefix).
func (c *Client) Lookup(ctx context.Context, targetPath string) (Target, error) {
	tf, want, _, err := c.targetInfo(ctx, targetPath)
	if err != nil {
		return Target{}, err
	}
	t := Target{Path: targetPath, Length: tf.Length, SHA256: want}
	if tf.Custom != nil {
		t.Custom = append([]byte(nil), *tf.Custom...)
	}
	return t, nil
}
