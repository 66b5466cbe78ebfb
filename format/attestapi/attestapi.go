// Package attestapi owns the attestation exchange between a device
// (plumbd) and the verifier in `plumb serve`: the request and response
// bodies of the /v1/attest endpoints and a client for them. The device
// starts every exchange. The exchange is specified in attestapi.md.
//
// Call order on a device: Enroll and Activate once per AK (the verifier
// binds the AK to the EK by credential activation), then for each
// attestation Nonce and Evidence. A Client is safe for concurrent use.
package attestapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Endpoint paths, relative to the server's base URL.
const (
	PathNonce    = "v1/attest/nonce"    // GET ?device=<id>
	PathEnroll   = "v1/attest/enroll"   // POST EnrollRequest -> Challenge
	PathActivate = "v1/attest/activate" // POST Activation -> Activated
	PathEvidence = "v1/attest/evidence" // POST Evidence -> Report
	PathDevices  = "v1/devices/"        // GET <id>/attestation -> the latest Report
)

// MaxBody bounds every request and response body but evidence (bounded by
// MaxEvidenceSize) and reports.
const MaxBody = 64 << 10

// MaxReport bounds a report body.
const MaxReport = 1 << 20

// Nonce is the answer to GET PathNonce: a fresh random nonce the device's
// next evidence must quote, valid until Expires and only once.
type Nonce struct {
	Nonce   []byte    `json:"nonce"` // base64
	Expires time.Time `json:"expires"`
}

// Challenge is the answer to POST PathEnroll (EnrollRequest): the
// credential the verifier made for the AK's name and the EK's public key.
// Both are TPM2B structures (with their size prefixes), base64.
type Challenge struct {
	Credential []byte `json:"credential"` // TPM2B_ID_OBJECT
	Secret     []byte `json:"secret"`     // TPM2B_ENCRYPTED_SECRET
}

// Activation is POST PathActivate: the secret the device's TPM recovered
// with TPM2_ActivateCredential.
type Activation struct {
	DeviceID string `json:"device_id"`
	Secret   []byte `json:"secret"` // base64
}

// Activated is the answer to a good Activation.
type Activated struct {
	DeviceID string    `json:"device_id"`
	Enrolled time.Time `json:"enrolled"`
}

// Problem is the body of every error answer.
type Problem struct {
	Error string `json:"error"`
}

// Report is the part of a verifier report (Report, JSON) a device
// reads: the verdict and the checks.
type Report struct {
	DeviceID string  `json:"device_id"`
	Verdict  string  `json:"verdict"` // "passed", "failed"
	Checks   []Check `json:"checks"`
}

// Check is one line of a report.
type Check struct {
	Name     string `json:"name"`
	Status   string `json:"status"` // "passed", "failed", "not checkable"
	Expected string `json:"expected,omitempty"`
	Actual   string `json:"actual,omitempty"`
	Detail   string `json:"detail,omitempty"`
}

// Failed lists the names of the checks that failed.
func (r *Report) Failed() []string {
	var out []string
	for _, c := range r.Checks {
		if c.Status == "failed" {
			out = append(out, c.Name)
		}
	}
	return out
}

// ErrRefused is an answer of 4xx: the verifier refused the request (an
// unknown nonce, a wrong secret, an unenrolled AK).
var ErrRefused = errors.New("verifier refused")

// doer is satisfied by *http.Client.
type doer interface {
	Do(*http.Request) (*http.Response, error)
}

// Client talks to one verifier.
type Client struct {
	base *url.URL
	http doer
}

// NewClient returns a client for the verifier at base (https://host/).
func NewClient(base string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("verifier: expected an http(s) URL, got %q", base)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: u, http: hc}, nil
}

// Nonce asks for a nonce for device id.
func (c *Client) Nonce(ctx context.Context, id string) (*Nonce, error) {
	var n Nonce
	if err := c.call(ctx, http.MethodGet, PathNonce+"?device="+url.QueryEscape(id), nil, &n, MaxBody); err != nil {
		return nil, err
	}
	return &n, nil
}

// Enroll sends the device's EK and AK and returns the verifier's challenge.
func (c *Client) Enroll(ctx context.Context, req *EnrollRequest) (*Challenge, error) {
	var ch Challenge
	if err := c.call(ctx, http.MethodPost, PathEnroll, req, &ch, MaxBody); err != nil {
		return nil, err
	}
	return &ch, nil
}

// Activate returns the recovered secret; nil error means enrolled.
func (c *Client) Activate(ctx context.Context, a *Activation) (*Activated, error) {
	var out Activated
	if err := c.call(ctx, http.MethodPost, PathActivate, a, &out, MaxBody); err != nil {
		return nil, err
	}
	return &out, nil
}

// Evidence sends evidence and returns the verifier's report, both as read
// (raw JSON, to keep or print) and decoded.
func (c *Client) Evidence(ctx context.Context, ev *Evidence) (*Report, []byte, error) {
	var raw json.RawMessage
	if err := c.call(ctx, http.MethodPost, PathEvidence, ev, &raw, MaxReport); err != nil {
		return nil, nil, err
	}
	var r Report
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, nil, fmt.Errorf("verifier report: %w", err)
	}
	if r.Verdict == "" {
		return nil, nil, errors.New("verifier report: expected a verdict, got none")
	}
	return &r, raw, nil
}

func (c *Client) call(ctx context.Context, method, path string, in, out any, limit int64) error {
	ref, err := url.Parse(path)
	if err != nil {
		return err
	}
	u := c.base.ResolveReference(ref)
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encoding %s request: %w", path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("verifier %s: %w", ref.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return fmt.Errorf("verifier %s: reading the answer: %w", ref.Path, err)
	}
	if int64(len(b)) > limit {
		return fmt.Errorf("verifier %s: answer larger than %d bytes", ref.Path, limit)
	}
	if resp.StatusCode/100 != 2 {
		var p Problem
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &p) == nil && p.Error != "" {
			msg = p.Error
		}
		if resp.StatusCode/100 == 4 {
			return fmt.Errorf("verifier %s: %w: %s: %s", ref.Path, ErrRefused, resp.Status, msg)
		}
		return fmt.Errorf("verifier %s: %s: %s", ref.Path, resp.Status, msg)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("verifier %s: decoding the answer: %w", ref.Path, err)
	}
	return nil
}
