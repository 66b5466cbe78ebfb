package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/net/http/httpproxy"
	"golang.org/x/time/rate"
)

// Link tunes a Client for slow, flaky or proxied links. The zero value is
// usable: the proxy from the environment, 1 min timeouts, no bandwidth
// cap, 5 attempts per DownloadFile call with backoff from 1 s to 1 min.
type Link struct {
	// Proxy is the URL of the HTTP(S) proxy for every request, e.g.
	// "http://10.0.0.1:3128". "" takes HTTPS_PROXY, HTTP_PROXY and
	// NO_PROXY from the environment when New is called (like
	// http.ProxyFromEnvironment, which never proxies localhost or
	// 127.0.0.1).
	Proxy string
	// RequestTimeout bounds each metadata request, body included; 0 means
	// 1 min, a negative value no limit but the caller's context.
	RequestTimeout time.Duration
	// IdleTimeout abandons a target download that receives no byte for
	// this long (DownloadFile then retries, resuming); 0 means 1 min, a
	// negative value no limit.
	IdleTimeout time.Duration
	// RateLimit caps target bodies at this many bytes per second (a token
	// bucket shared by the Client's downloads); 0 means no cap.
	RateLimit int64
	// Attempts is how many times one DownloadFile call tries before it
	// gives up; 0 means 5, 1 means no retry.
	Attempts int
	// RetryBase and RetryMax bound the backoff between attempts: the wait
	// before try n+1 is RetryBase·2^(n-1), at most RetryMax, of which a
	// random half is taken (jitter). 0 means 1 s and 1 min.
	RetryBase, RetryMax time.Duration
}

// withDefaults checks l and fills in its defaults.
func (l Link) withDefaults() (Link, error) {
	switch {
	case l.RateLimit < 0:
		return l, fmt.Errorf("fetch options: rate limit: expected bytes per second or 0, got %d", l.RateLimit)
	case l.Attempts < 0:
		return l, fmt.Errorf("fetch options: attempts: expected a count or 0, got %d", l.Attempts)
	case l.RetryBase < 0 || l.RetryMax < 0:
		return l, fmt.Errorf("fetch options: retry backoff: expected positive durations or 0, got %s and %s", l.RetryBase, l.RetryMax)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&l.RequestTimeout, time.Minute)
	def(&l.IdleTimeout, time.Minute)
	def(&l.RetryBase, time.Second)
	def(&l.RetryMax, time.Minute)
	l.RetryMax = max(l.RetryMax, l.RetryBase)
	if l.Attempts == 0 {
		l.Attempts = 5
	}
	return l, nil
}

// setLink builds the client's two doers from opts: c.http for metadata
// (with the request timeout) and c.dl for targets (no overall timeout: a
// large target on a slow link takes long; the idle timeout applies). Both
// use a clone of the given client's transport with the proxy set, so
// neither http.DefaultClient nor the caller's client is changed.
func (c *Client) setLink(opts Options) error {
	l, err := opts.Link.withDefaults()
	if err != nil {
		return err
	}
	c.link = l
	proxy, err := proxyFunc(l.Proxy)
	if err != nil {
		return err
	}
	var hc http.Client
	if opts.HTTPClient != nil {
		hc = *opts.HTTPClient
	}
	rt := hc.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	if tr, ok := rt.(*http.Transport); ok {
		tr = tr.Clone()
		tr.Proxy = proxy
		tr.OnProxyConnectResponse = refusedByProxy
		hc.Transport = tr
	} else if l.Proxy != "" {
		return fmt.Errorf("fetch options: proxy: expected the HTTP client's transport to be an *http.Transport, got %T", rt)
	}
	d := &linkDoer{hc: &hc, proxy: proxy}
	c.dl = d
	c.http = d
	if l.RequestTimeout > 0 {
		c.http = &timeoutDoer{d: d, timeout: l.RequestTimeout}
	}
	if l.RateLimit > 0 {
		burst := int(min(l.RateLimit, 64<<10))
		c.limit = rate.NewLimiter(rate.Limit(l.RateLimit), burst)
	}
	return nil
}

// proxyFunc is the transport's Proxy: the given URL, or the environment's.
func proxyFunc(proxy string) (func(*http.Request) (*url.URL, error), error) {
	if proxy == "" {
		env := httpproxy.FromEnvironment().ProxyFunc()
		return func(r *http.Request) (*url.URL, error) { return env(r.URL) }, nil
	}
	u, err := url.Parse(proxy)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "socks5") {
		return nil, fmt.Errorf("fetch options: proxy: expected a URL like http://10.0.0.1:3128, got %q", proxy)
	}
	return func(*http.Request) (*url.URL, error) { return u, nil }, nil
}

// proxyError is a proxy's refusal to open a tunnel to the repository, or a
// proxy that cannot be reached.
type proxyError struct {
	proxy  string // the proxy's URL, password redacted
	target string // host:port
	status int    // the CONNECT answer's status; 0 when the proxy was not reached
	reason string // "403 Forbidden", "connection refused"
}

func (e *proxyError) Error() string {
	return fmt.Sprintf("proxy %s refused the connection to %s: %s", e.proxy, e.target, e.reason)
}

// refusedByProxy is the transport's OnProxyConnectResponse: it turns a
// CONNECT answered with anything but 200 into a proxyError.
func refusedByProxy(_ context.Context, proxy *url.URL, req *http.Request, resp *http.Response) error {
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	return &proxyError{proxy: proxy.Redacted(), target: req.Host, status: resp.StatusCode, reason: resp.Status}
}

// linkDoer does requests with the client built by setLink and names the
// proxy in the errors of an unreachable proxy.
type linkDoer struct {
	hc    *http.Client
	proxy func(*http.Request) (*url.URL, error)
}

func (d *linkDoer) Do(req *http.Request) (*http.Response, error) {
	resp, err := d.hc.Do(req)
	if err == nil {
		return resp, nil
	}
	var pe *proxyError
	if errors.As(err, &pe) {
		return nil, pe
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "proxyconnect" {
		p, perr := d.proxy(req)
		if perr == nil && p != nil {
			reason := op.Err.Error()
			var inner *net.OpError
			if errors.As(op.Err, &inner) && inner.Err != nil {
				reason = inner.Err.Error() // "connect: connection refused"
			}
			return nil, &proxyError{proxy: p.Redacted(), target: hostPort(req.URL), reason: reason}
		}
	}
	return nil, err
}

func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "http" {
		return net.JoinHostPort(u.Hostname(), "80")
	}
	return net.JoinHostPort(u.Hostname(), "443")
}

// timeoutDoer bounds each request, body included, by timeout.
type timeoutDoer struct {
	d       doer
	timeout time.Duration
}

// timeoutError says that a request took longer than its timeout.
type timeoutError struct{ after time.Duration }

func (e *timeoutError) Error() string { return fmt.Sprintf("no complete answer within %s", e.after) }

func (t *timeoutDoer) Do(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithTimeoutCause(req.Context(), t.timeout, &timeoutError{t.timeout})
	resp, err := t.d.Do(req.WithContext(ctx))
	if err != nil {
		timedOut := req.Context().Err() == nil && ctx.Err() != nil
		cause := context.Cause(ctx)
		cancel()
		if timedOut {
			return nil, cause
		}
		return nil, err
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, ctx: ctx, parent: req.Context(), cancel: cancel}
	return resp, nil
}

type cancelBody struct {
	io.ReadCloser
	ctx, parent context.Context
	cancel      context.CancelFunc
}

func (b *cancelBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && b.parent.Err() == nil && b.ctx.Err() != nil {
		err = context.Cause(b.ctx)
	}
	return n, err
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// idleError says that a target body stalled.
type idleError struct{ after time.Duration }

func (e *idleError) Error() string { return fmt.Sprintf("no data for %s", e.after) }

// openTarget GETs a target URL with c.dl. The returned body applies the
// idle timeout (also to the wait for the response's headers) and the
// bandwidth cap; stop releases the request and must be called.
func (c *Client) openTarget(ctx context.Context, u string, header http.Header) (resp *http.Response, body io.Reader, stop func(), err error) {
	actx, cancel := context.WithCancelCause(ctx)
	idle := c.link.IdleTimeout
	var timer *time.Timer
	if idle > 0 {
		timer = time.AfterFunc(idle, func() { cancel(&idleError{idle}) })
	}
	stopAll := func() {
		if timer != nil {
			timer.Stop()
		}
		cancel(nil)
	}
	req, err := http.NewRequestWithContext(actx, http.MethodGet, u, nil)
	if err != nil {
		stopAll()
		return nil, nil, nil, err
	}
	minimalHeaders(req)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err = c.dl.Do(req)
	if err != nil {
		var ie *idleError
		if cause := context.Cause(actx); ctx.Err() == nil && errors.As(cause, &ie) {
			err = fmt.Errorf("waiting for an answer: %w", cause)
		}
		stopAll()
		return nil, nil, nil, err
	}
	lr := &linkReader{r: resp.Body, ctx: actx, parent: ctx, timer: timer, idle: idle, limit: c.limit}
	return resp, lr, func() { resp.Body.Close(); stopAll() }, nil
}

// linkReader reads a target body: it re-arms the idle timer on every byte
// received and waits for the bandwidth cap's tokens.
type linkReader struct {
	r           io.Reader
	ctx, parent context.Context
	timer       *time.Timer
	idle        time.Duration
	limit       *rate.Limiter
}

func (l *linkReader) Read(p []byte) (int, error) {
	if l.limit != nil && len(p) > l.limit.Burst() {
		p = p[:l.limit.Burst()]
	}
	n, err := l.r.Read(p)
	if n > 0 && l.limit != nil {
		if l.timer != nil {
			l.timer.Stop() // waiting for tokens is not idleness
		}
		if werr := l.limit.WaitN(l.ctx, n); werr != nil && err == nil {
			err = werr
		}
	}
	if n > 0 && l.timer != nil {
		l.timer.Reset(l.idle)
	}
	if err != nil && err != io.EOF && l.parent.Err() == nil {
		var ie *idleError
		if cause := context.Cause(l.ctx); errors.As(cause, &ie) {
			err = cause
		}
	}
	return n, err
}
