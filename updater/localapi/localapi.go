// Package localapi is plumbd's local API: JSON over HTTP on a unix socket
// (/run/plumb/agent.sock) for applications and operators on the device.
//
//	GET    /v1/status         the agent's status (as plumbd status prints it)
//	POST   /v1/check          poll the repository now
//	GET    /v1/locks          the held application locks
//	POST   /v1/locks/{name}   take or renew a lock: {"ttl": "10m"} (optional; the agent's lock_max_hold caps it)
//	DELETE /v1/locks/{name}   release it
//	POST   /v1/approve        install the ready release: {"version": "2.0.0"} (optional)
//	POST   /v1/update         update from a medium: {"from": "/dev/sdb" or a mounted directory}
//
// Who may call: the socket is created mode 0600, owned by root; the
// server also checks the caller's credentials (SO_PEERCRED) and answers
// 403 to any uid not in Options.UIDs (root only by default). A workload
// container gets the socket mounted only when its manifest asks for it.
// Every request body is at most maxBody bytes of strict JSON; a bad one is
// answered 400 with one line naming what was wrong.
package localapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/plumb-os/plumb/updater/agent"
)

// Socket is where plumbd listens.
const Socket = agent.APISocket

// maxBody caps a request body.
const maxBody = 4 << 10

// requestTimeout bounds how long a request waits for the agent (which
// serves requests between its polls and installs).
const requestTimeout = 10 * time.Minute

// Options configure a Server.
type Options struct {
	// Status returns the agent's status JSON.
	Status func() ([]byte, error)
	// Requests reaches the agent's loop (agent.Agent.Requests).
	Requests chan<- agent.Request
	// Locks are the agent's application locks.
	Locks *agent.Locks
	// UIDs may call besides root.
	UIDs []int
	Log  *slog.Logger
}

// Server serves the local API.
type Server struct{ o Options }

// New returns a server.
func New(o Options) *Server {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Server{o: o}
}

type credKey struct{}

// Listen creates the socket at path (replacing a stale one), mode 0600.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	os.Remove(path)
	old := unix.Umask(0o177)
	l, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("local API: %w", err)
	}
	return l, nil
}

// Serve answers requests on l until ctx ends.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if uc, ok := c.(*net.UnixConn); ok {
				if raw, err := uc.SyscallConn(); err == nil {
					var cred *unix.Ucred
					raw.Control(func(fd uintptr) { cred, _ = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
					if cred != nil {
						return context.WithValue(ctx, credKey{}, cred)
					}
				}
			}
			return ctx
		},
	}
	go func() {
		<-ctx.Done()
		hs.Close()
	}()
	err := hs.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Handler is the API's routes (behind the caller check).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		b, err := s.o.Status()
		if err != nil {
			fail(w, http.StatusInternalServerError, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	})
	mux.HandleFunc("POST /v1/check", func(w http.ResponseWriter, r *http.Request) {
		if !s.body(w, r, nil) {
			return
		}
		s.ask(w, r, agent.Request{Kind: agent.ReqCheck})
	})
	mux.HandleFunc("GET /v1/locks", func(w http.ResponseWriter, r *http.Request) {
		held, _ := s.o.Locks.Held()
		reply(w, map[string]any{"locks": held})
	})
	mux.HandleFunc("POST /v1/locks/{name}", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			TTL string `json:"ttl"`
		}
		if !s.body(w, r, &req) {
			return
		}
		var ttl time.Duration
		if req.TTL != "" {
			d, err := time.ParseDuration(req.TTL)
			if err != nil || d <= 0 {
				fail(w, http.StatusBadRequest, fmt.Errorf("ttl: expected a positive duration like \"10m\", got %q", req.TTL))
				return
			}
			ttl = d
		}
		li, err := s.o.Locks.Take(r.PathValue("name"), owner(r), ttl)
		if err != nil {
			fail(w, http.StatusBadRequest, err)
			return
		}
		s.o.Log.Info("application lock taken", "name", li.Name, "owner", li.Owner, "expires", li.Expires)
		reply(w, li)
	})
	mux.HandleFunc("DELETE /v1/locks/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if !s.o.Locks.Release(name) {
			fail(w, http.StatusNotFound, fmt.Errorf("lock %q is not held", name))
			return
		}
		s.o.Log.Info("application lock released", "name", name, "by", owner(r))
		reply(w, map[string]string{"released": name})
	})
	mux.HandleFunc("POST /v1/approve", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Version string `json:"version"`
		}
		if !s.body(w, r, &req) {
			return
		}
		s.ask(w, r, agent.Request{Kind: agent.ReqApprove, Arg: req.Version})
	})
	mux.HandleFunc("POST /v1/update", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			From string `json:"from"`
		}
		if !s.body(w, r, &req) {
			return
		}
		if !filepath.IsAbs(req.From) {
			fail(w, http.StatusBadRequest, fmt.Errorf("from: expected an absolute path of a block device or a directory, got %q", req.From))
			return
		}
		s.ask(w, r, agent.Request{Kind: agent.ReqUpdateFrom, Arg: req.From})
	})
	return s.allowed(mux)
}

// allowed answers 403 to callers that are neither root nor in UIDs.
func (s *Server) allowed(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cred, _ := r.Context().Value(credKey{}).(*unix.Ucred)
		if cred == nil || (cred.Uid != 0 && !slices.Contains(s.o.UIDs, int(cred.Uid))) {
			fail(w, http.StatusForbidden, errors.New("caller not allowed: expected root or a uid in the agent's list"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func owner(r *http.Request) string {
	if c, ok := r.Context().Value(credKey{}).(*unix.Ucred); ok {
		return "pid " + strconv.Itoa(int(c.Pid)) + " uid " + strconv.Itoa(int(c.Uid))
	}
	return ""
}

// body decodes the request's JSON body into v (nil: it must be empty or
// {}). It answers 400 and returns false on bad input.
func (s *Server) body(w http.ResponseWriter, r *http.Request, v any) bool {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		fail(w, http.StatusBadRequest, err)
		return false
	}
	if len(data) > maxBody {
		fail(w, http.StatusRequestEntityTooLarge, fmt.Errorf("request body: expected at most %d bytes", maxBody))
		return false
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return true
	}
	if v == nil {
		v = &struct{}{}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		fail(w, http.StatusBadRequest, fmt.Errorf("request body: %v", err))
		return false
	}
	return true
}

// ask hands a request to the agent's loop and answers with its result.
func (s *Server) ask(w http.ResponseWriter, r *http.Request, req agent.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	done := make(chan error, 1)
	req.Reply = done
	select {
	case s.o.Requests <- req:
	case <-ctx.Done():
		fail(w, http.StatusServiceUnavailable, errors.New("the agent is busy (installing or waiting): try again"))
		return
	}
	select {
	case err := <-done:
		if err != nil {
			fail(w, http.StatusConflict, err)
			return
		}
		reply(w, map[string]string{"ok": req.Kind})
	case <-ctx.Done():
		fail(w, http.StatusGatewayTimeout, errors.New("the agent took too long to answer"))
	}
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

// Client calls the local API of the agent on this device.
type Client struct{ hc *http.Client }

// NewClient returns a client of the socket at path.
func NewClient(path string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &Client{hc: &http.Client{Transport: tr}}
}

// Do makes one request (body marshalled as JSON when not nil) and returns
// the answer's body; an answer that is not 2xx is an error with the
// server's one-line reason.
func (c *Client) Do(ctx context.Context, method, path string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://plumbd"+path, rd)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("local API: %w (is plumbd run running?)", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return nil, errors.New(e.Error)
		}
		return nil, fmt.Errorf("local API: %s", resp.Status)
	}
	return data, nil
}
