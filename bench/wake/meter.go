// Package wake measures how a fleet learns of a new release (docs/wake.md):
// simulated devices in one process against (a) HTTPS conditional-GET
// polling of timestamp.json, straight to `plumb serve` and through nginx
// with proxy_cache, (b) MQTT over TLS with mosquitto as the broker, and
// (c) plumb serve's held wake-up stream (server-sent events). Its benchmark
// (wake_test.go) reports bytes on the wire per idle device-month, server
// CPU and RSS per 10,000 devices, the time from publish until 95% of the
// devices started downloading, and a reconnect storm after a server
// restart:
//
//	WAKE_DEVICES=10000 go test -run '^$' -bench Wake -benchtime 1x -timeout 60m ./bench/wake
//
// bench/run.sh runs it (section wake) and prints its table. This file and
// proc.go are the measuring instruments: a counting dialer and a sampler
// of server processes (bench/sim's /proc reader); bench/sim also makes
// the devices' identity keys.
package wake

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// IPHeader is the IPv4 + TCP header of one segment with the timestamp
// option Linux sends (20 + 20 + 12 bytes): what the link carries beyond
// the TCP payload, per segment.
const IPHeader = 52

// closeSegments is the FIN and ACK each way that end a connection after
// TCP_INFO was read.
const closeSegments = 4

// Meter counts the TCP payload of every connection it dialed (TLS records,
// handshakes included) and their TCP segments (TCP_INFO, both ways, SYNs,
// pure ACKs and keep-alive probes included).
type Meter struct {
	bytes    atomic.Int64
	segsDone atomic.Int64 // segments of closed connections
	mu       sync.Mutex
	live     map[*conn]struct{}
	dialer   net.Dialer
}

// NewMeter returns a meter whose connections send no TCP keep-alive
// probes (each design keeps its connections alive its own way).
func NewMeter() *Meter {
	return &Meter{live: map[*conn]struct{}{}, dialer: net.Dialer{Timeout: 30 * time.Second, KeepAlive: -1}}
}

// DialContext dials a counted TCP connection.
func (m *Meter) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := m.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	mc := &conn{Conn: c, m: m}
	m.mu.Lock()
	m.live[mc] = struct{}{}
	m.mu.Unlock()
	return mc, nil
}

// Snapshot returns the payload bytes and segments so far, the segments of
// open connections read now.
func (m *Meter) Snapshot() (bytes, segs int64) {
	m.mu.Lock()
	var live int64
	for c := range m.live {
		live += c.segments()
	}
	m.mu.Unlock()
	return m.bytes.Load(), m.segsDone.Load() + live
}

// Live is the number of open connections.
func (m *Meter) Live() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.live)
}

type conn struct {
	net.Conn
	m    *Meter
	once sync.Once
}

func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.m.bytes.Add(int64(n))
	return n, err
}

func (c *conn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.m.bytes.Add(int64(n))
	return n, err
}

func (c *conn) Close() error {
	c.once.Do(func() {
		c.m.mu.Lock()
		delete(c.m.live, c)
		c.m.mu.Unlock()
		c.m.segsDone.Add(c.segments() + closeSegments)
	})
	return c.Conn.Close()
}

// segments is the TCP segments sent and received so far.
func (c *conn) segments() int64 {
	tc, ok := c.Conn.(*net.TCPConn)
	if !ok {
		return 0
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return 0
	}
	var n int64
	raw.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			n = int64(info.Segs_in) + int64(info.Segs_out)
		}
	})
	return n
}
