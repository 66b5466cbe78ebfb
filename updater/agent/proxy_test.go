package agent

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/plumb-os/plumb/builder/tufrepo"
	"github.com/plumb-os/plumb/updater/fetch"
)

// connectProxy is an HTTP CONNECT proxy on 127.0.0.1 for tests: it tunnels
// to the requested address, or answers every CONNECT with refuse (a status
// code) when refuse is set. It counts the tunnels it opened.
func connectProxy(t *testing.T, refuse int) (url string, tunnels *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	tunnels = new(atomic.Int64)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil || req.Method != http.MethodConnect {
					return
				}
				if refuse != 0 {
					io.WriteString(c, fmt.Sprintf("HTTP/1.1 %d %s\r\n\r\n", refuse, http.StatusText(refuse)))
					return
				}
				up, err := net.Dial("tcp", req.Host)
				if err != nil {
					io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
					return
				}
				defer up.Close()
				tunnels.Add(1)
				io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
				go io.Copy(up, c)
				io.Copy(c, up)
			}()
		}
	}()
	return "http://" + l.Addr().String(), tunnels
}

// TestUpdateThroughProxy: the device reaches its repository only through an
// HTTP CONNECT proxy, and still updates.
func TestUpdateThroughProxy(t *testing.T) {
	r := newRig(t, tufrepo.Options{})
	proxy, tunnels := connectProxy(t, 0)
	r.link = fetch.Link{Proxy: proxy}
	r.publish(t, v2)
	a := r.agent(t, "a", v1, nil)
	if err := a.Settle(t.Context()); err != nil {
		t.Fatal(err)
	}
	installV2(t, r, a)
	if tunnels.Load() == 0 {
		t.Error("the update did not go through the proxy")
	}
}

// TestProxyRefuses: a proxy that refuses gives one line naming it, and the
// device is left as it was.
func TestProxyRefuses(t *testing.T) {
	r := newRig(t, tufrepo.Options{})
	proxy, _ := connectProxy(t, http.StatusForbidden)
	r.link = fetch.Link{Proxy: proxy}
	r.publish(t, v2)
	a := r.agent(t, "a", v1, nil)
	if err := a.Settle(t.Context()); err != nil {
		t.Fatal(err)
	}
	installed, err := a.Poll(t.Context())
	if installed || err == nil {
		t.Fatalf("Poll = %v, %v; want a refusal", installed, err)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "proxy "+proxy+" refused") {
		t.Errorf("error = %q, want one line saying the proxy %s refused", msg, proxy)
	}
	if got, want := r.entries(t), []string{"plumb-1.0.0.conf"}; !equal(got, want) {
		t.Errorf("ESP entries = %q, want %q", got, want)
	}
}
