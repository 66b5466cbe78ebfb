package testutil

import (
	"bytes"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestChromium drives the real browser against a TLS server on 127.0.0.1:
// a 404 and a 200 are told apart, a form posts its fields, text and
// attributes are read, the screenshot is a PNG, and the browser's process
// is gone after cleanup.
func TestChromium(t *testing.T) {
	hs := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/form":
			fmt.Fprint(w, `<!doctype html><form method="post" action="/done"><input name="user"><button data-test="go">Go</button></form>`)
		case "/done":
			r.ParseForm()
			fmt.Fprintf(w, `<!doctype html><p id="got" data-x="%s">hello %s</p>`, "y", html.EscapeString(r.PostForm.Get("user")))
		default:
			http.NotFound(w, r)
		}
	}))
	defer hs.Close()
	var pid int
	t.Run("browser", func(t *testing.T) {
		b := Chromium(t)
		pid = b.PID
		if code := b.Open(hs.URL + "/missing"); code != http.StatusNotFound {
			t.Errorf("GET /missing: %d, want 404", code)
		}
		if code := b.Open(hs.URL + "/form"); code != http.StatusOK {
			t.Errorf("GET /form: %d, want 200", code)
		}
		if code := b.Submit(map[string]string{`input[name="user"]`: "ada <b>"}, `[data-test="go"]`); code != http.StatusOK {
			t.Errorf("POST /done: %d, want 200", code)
		}
		if got := b.Text("#got"); got != "hello ada <b>" {
			t.Errorf("Text(#got) = %q", got)
		}
		if got := b.Attr("#got", "data-x"); got != "y" {
			t.Errorf("Attr = %q, want y", got)
		}
		if b.Exists("#none") || b.Count("p") != 1 {
			t.Errorf("Exists/Count wrong")
		}
		shot := filepath.Join(t.TempDir(), "page.png")
		b.Screenshot(shot)
		png, err := os.ReadFile(shot)
		if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
			t.Errorf("screenshot is not a PNG: %v", err)
		}
	})
	if pid == 0 {
		t.Fatal("no browser started")
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("chromium (pid %d) still runs after cleanup", pid)
	}
}
