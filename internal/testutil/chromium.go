package testutil

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/remote"
)

// Browser is a headless Chromium (Debian's /usr/bin/chromium) started by a
// test on 127.0.0.1 and driven over the DevTools protocol with chromedp.
// The test starts it with Chromium and it is ended by PID (its whole
// process group) at cleanup. Every method fails the test on error; each
// step is bounded by StepTimeout so a wedged page cannot hang the test run
// (a bound, not an assertion on speed). Not safe for concurrent use.
type Browser struct {
	t   testing.TB
	ctx context.Context // the browser tab
	// PID is the browser's process id (its process group's leader).
	PID int
	// Dir is the browser's profile directory, under the test's temp dir.
	Dir string
	// StepTimeout bounds one helper call (default 60 s: Chromium under a
	// loaded 2-core machine, at nice 15, is slow but not that slow).
	StepTimeout time.Duration
}

// Chromium starts headless Chromium for t: remote debugging on
// 127.0.0.1 only, a fresh profile in t's temp dir, certificate errors
// ignored (tests serve httptest's self-signed TLS on 127.0.0.1; nothing
// else is reached). It fails the test when chromium is missing (make deps
// installs it), and skips under -short.
func Chromium(t testing.TB) *Browser {
	t.Helper()
	bin := RequireTool(t, "chromium", "chromium")
	dir := t.TempDir()
	args := []string{
		"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--no-default-browser-check", "--disable-extensions",
		"--disable-background-networking", "--disable-sync", "--metrics-recording-only",
		"--ignore-certificate-errors", "--window-size=1280,900",
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
		"--user-data-dir=" + filepath.Join(dir, "profile"),
		"about:blank",
	}
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = append(os.Environ(), "HOME="+dir)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		// The whole group: Chromium forks zygote, GPU and renderer
		// processes.
		syscall.Kill(-pid, syscall.SIGKILL)
		cmd.Wait()
	})
	// Chromium prints "DevTools listening on ws://127.0.0.1:PORT/..." on
	// stderr once it listens; keep the rest of stderr in a log file.
	logf, err := os.Create(filepath.Join(dir, "chromium.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	wsc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			if u, ok := strings.CutPrefix(line, "DevTools listening on "); ok && !sent {
				wsc <- strings.TrimSpace(u)
				sent = true
			}
		}
		io.Copy(logf, stderr)
		if !sent {
			close(wsc)
		}
	}()
	var ws string
	select {
	case u, ok := <-wsc:
		if !ok {
			t.Fatalf("chromium exited before listening for DevTools; its log: %s", filepath.Join(dir, "chromium.log"))
		}
		ws = u
	case <-time.After(2 * time.Minute):
		t.Fatalf("chromium did not listen for DevTools in 2 min; its log: %s", filepath.Join(dir, "chromium.log"))
	}
	if !strings.HasPrefix(ws, "ws://127.0.0.1:") {
		t.Fatalf("chromium DevTools at %q, expected ws://127.0.0.1:PORT", ws)
	}
	actx, acancel := remote.NewAllocator(context.Background(), ws, remote.NoModifyURL)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); acancel() })
	b := &Browser{t: t, ctx: ctx, PID: pid, Dir: dir, StepTimeout: time.Minute}
	if err := chromedp.Do(ctx); err != nil { // attaches to a new tab
		t.Fatalf("attaching to chromium: %v", err)
	}
	return b
}

// Do runs chromedp actions in the browser's tab, bounded by StepTimeout.
func (b *Browser) Do(actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.ctx, b.StepTimeout)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

// Eval evaluates a JavaScript expression in the page into out (a pointer
// to what the JSON value decodes to).
func Eval[T any](b *Browser, js string) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, b.StepTimeout)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](js))
}

// Open navigates to url, waits for the page to load, and returns the HTTP
// status of the document.
func (b *Browser) Open(url string) int {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, b.StepTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Navigate(url))
	if err != nil {
		b.t.Fatalf("opening %s: %v", url, err)
	}
	return status(resp)
}

func status(resp *network.Response) int {
	if resp == nil {
		return 0
	}
	return int(resp.Status)
}

// Submit fills the form fields (CSS selector -> value) and clicks the
// button sel, then waits for the next page; it returns that page's HTTP
// status.
func (b *Browser) Submit(fields map[string]string, sel string) int {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, b.StepTimeout)
	defer cancel()
	var acts []chromedp.Action[chromedp.Void]
	for f, v := range fields {
		acts = append(acts, chromedp.SetValue(chromedp.CSS(f), v))
	}
	if err := chromedp.Do(ctx, acts...); err != nil {
		b.t.Fatalf("filling the form: %v", err)
	}
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("submitting %s: %v", sel, err)
	}
	return status(resp)
}

// Login opens base+"/ui/login", submits user and password, and fails the
// test unless the server answers with a page (not the login form again).
func (b *Browser) Login(base, user, password string) {
	b.t.Helper()
	if code := b.Open(strings.TrimSuffix(base, "/") + "/ui/login"); code != 200 {
		b.t.Fatalf("GET /ui/login: HTTP %d", code)
	}
	code := b.Submit(map[string]string{`input[name="user"]`: user, `input[name="password"]`: password}, `[data-test="login-submit"]`)
	if code != 200 {
		b.t.Fatalf("logging in as %s: HTTP %d: %s", user, code, b.Text("body"))
	}
	if b.Exists(`[data-test="login-form"]`) {
		b.t.Fatalf("logging in as %s: still on the login form: %s", user, b.Text(`[data-test="error"]`))
	}
}

// Text returns the visible text of the first element matching the CSS
// selector sel ("" when there is none).
func (b *Browser) Text(sel string) string {
	b.t.Helper()
	ts := b.Texts(sel)
	if len(ts) == 0 {
		return ""
	}
	return ts[0]
}

// Texts returns the visible text of every element matching sel.
func (b *Browser) Texts(sel string) []string {
	b.t.Helper()
	js := fmt.Sprintf(`Array.from(document.querySelectorAll(%q)).map(e => e.innerText)`, sel)
	out, err := Eval[[]string](b, js)
	if err != nil {
		b.t.Fatalf("reading %s: %v", sel, err)
	}
	return out
}

// Attr returns the attribute name of the first element matching sel.
func (b *Browser) Attr(sel, name string) string {
	b.t.Helper()
	js := fmt.Sprintf(`(e => e ? (e.getAttribute(%q) || "") : "")(document.querySelector(%q))`, name, sel)
	out, err := Eval[string](b, js)
	if err != nil {
		b.t.Fatalf("reading %s[%s]: %v", sel, name, err)
	}
	return out
}

// Count returns how many elements match sel.
func (b *Browser) Count(sel string) int {
	b.t.Helper()
	n, err := Eval[int](b, fmt.Sprintf(`document.querySelectorAll(%q).length`, sel))
	if err != nil {
		b.t.Fatalf("counting %s: %v", sel, err)
	}
	return n
}

// Exists reports whether an element matches sel.
func (b *Browser) Exists(sel string) bool { b.t.Helper(); return b.Count(sel) > 0 }

// Screenshot saves a PNG of the whole page to path.
func (b *Browser) Screenshot(path string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, b.StepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}
