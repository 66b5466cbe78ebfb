package testutil

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// PG is a real PostgreSQL server (Debian's postgresql package) on a
// private data directory and a free port on 127.0.0.1, started by a test
// and stopped by its PID at cleanup.
type PG struct {
	t    testing.TB
	bin  string // directory of initdb and postgres
	dir  string // data directory
	port int
	cred *syscall.Credential // nil: run as the current user
	cmd  *exec.Cmd
	DSN  string // postgres://plumb@127.0.0.1:PORT/plumb?sslmode=disable
}

// pgBin finds the newest /usr/lib/postgresql/*/bin holding postgres.
func pgBin(t testing.TB) string {
	ds, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(ds) == 0 {
		msg := "PostgreSQL not found in /usr/lib/postgresql/*/bin: run make deps (apt-get install postgresql)"
		if testing.Short() {
			t.Skip(msg)
		}
		t.Fatal(msg)
	}
	sort.Strings(ds)
	return filepath.Dir(ds[len(ds)-1])
}

// Postgres initialises a database cluster and starts PostgreSQL on it.
// PostgreSQL refuses to run as root, so under root it runs as nobody.
func Postgres(t testing.TB) *PG {
	t.Helper()
	p := &PG{t: t, bin: pgBin(t)}
	top, err := os.MkdirTemp("", "plumb-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	p.dir = filepath.Join(top, "data")
	if err := os.Mkdir(p.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		p.cred = &syscall.Credential{Uid: 65534, Gid: 65534} // nobody:nogroup
		if err := os.Chmod(top, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p.dir, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	initdb := exec.Command(filepath.Join(p.bin, "initdb"), "-D", p.dir, "-U", "plumb", "--auth=trust", "-E", "UTF8", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	initdb.Dir = "/"
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	p.Start()
	t.Cleanup(p.Stop)
	// The database the tests use; "postgres" is the maintenance one.
	createdb := exec.Command(filepath.Join(p.bin, "createdb"), "-h", "127.0.0.1", "-p", fmt.Sprint(p.port), "-U", "plumb", "plumb")
	if out, err := createdb.CombinedOutput(); err != nil {
		t.Fatalf("createdb: %v\n%s", err, out)
	}
	p.DSN = fmt.Sprintf("postgres://plumb@127.0.0.1:%d/plumb?sslmode=disable", p.port)
	return p
}

// Start starts the server (again, after Kill or Stop) and waits until it
// accepts connections.
func (p *PG) Start() {
	p.t.Helper()
	logf, err := os.OpenFile(filepath.Join(filepath.Dir(p.dir), "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(p.bin, "postgres"), "-D", p.dir, "-h", "127.0.0.1", "-p", fmt.Sprint(p.port),
		"-k", "", "-c", "fsync=on", "-c", "max_connections=200", "-c", "shared_buffers=32MB")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred, Setpgid: true}
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("starting postgres: %v", err)
	}
	p.cmd = cmd
	isready := filepath.Join(p.bin, "pg_isready")
	for i := 0; ; i++ {
		if exec.Command(isready, "-q", "-h", "127.0.0.1", "-p", fmt.Sprint(p.port)).Run() == nil {
			return
		}
		if i == 600 {
			log, _ := os.ReadFile(logf.Name())
			p.t.Fatalf("postgres did not accept connections within 60s:\n%s", log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Kill ends the server at once (SIGKILL to the postmaster and its
// process group), as a crash would.
func (p *PG) Kill() {
	if p.cmd == nil {
		return
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	p.cmd.Wait()
	p.cmd = nil
}

// Stop shuts the server down (fast shutdown) and waits for it.
func (p *PG) Stop() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	p.cmd = nil
}

// PID is the postmaster's process id (0 when stopped): its backends are
// its children.
func (p *PG) PID() int {
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Log returns the server's log, for failure messages.
func (p *PG) Log() string {
	b, _ := os.ReadFile(filepath.Join(filepath.Dir(p.dir), "postgres.log"))
	return strings.TrimSpace(string(b))
}
