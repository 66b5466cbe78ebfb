package testvm

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
)

// maxConsole bounds the console kept in memory. Past it the oldest half
// is dropped (dir/console.log keeps everything).
const maxConsole = 8 << 20

// tailLines is how many console lines an error quotes.
const tailLines = 20

// Mark is a position in the console output: the byte offset from the
// start of the VM's console. Get one with VM.Mark.
type Mark int64

// console is the serial output of one QEMU process, appended by one
// reader and searched by any number of waiters.
type console struct {
	mu      sync.Mutex
	buf     []byte        // the retained output
	base    int64         // absolute offset of buf[0]
	changed chan struct{} // closed and replaced at every append and at close
	closed  bool          // no more output will come
	max     int           // maxConsole, smaller in tests
}

func newConsole(max int) *console {
	return &console{changed: make(chan struct{}), max: max}
}

// Write appends output. It never fails, so it can sit in an io.MultiWriter.
func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return len(p), nil
	}
	c.buf = append(c.buf, p...)
	if len(c.buf) > c.max {
		// Drop the older half, at a line boundary when there is one.
		cut := len(c.buf) - c.max/2
		if i := bytes.IndexByte(c.buf[cut:], '\n'); i >= 0 {
			cut += i + 1
		}
		c.base += int64(cut)
		c.buf = append([]byte(nil), c.buf[cut:]...)
	}
	close(c.changed)
	c.changed = make(chan struct{})
	return len(p), nil
}

// close says that no more output will come: a last unterminated line
// then counts as a complete line.
func (c *console) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		close(c.changed)
	}
}

// String returns the retained output.
func (c *console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.buf)
}

// mark returns the start of the line being written, so that a line
// completed after the call is "after" the mark.
func (c *console) mark() Mark {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := bytes.LastIndexByte(c.buf, '\n')
	return Mark(c.base + int64(i+1))
}

// scan looks for the first complete line at or after from that matches
// re. It returns the submatches (nil if none), the position to scan from
// next time, a channel closed at the next change, and whether the
// console is closed.
func (c *console) scan(from int64, re *regexp.Regexp) (match []string, next int64, changed <-chan struct{}, closed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if from < c.base {
		from = c.base
	}
	rest := c.buf[from-c.base:]
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 && !c.closed {
			break // incomplete line: wait for its end
		}
		line, adv := rest, len(rest)
		if i >= 0 {
			line, adv = rest[:i], i+1
		}
		from += int64(adv)
		rest = rest[adv:]
		if m := re.FindStringSubmatch(string(bytes.TrimRight(line, "\r"))); m != nil {
			return m, from, c.changed, c.closed
		}
	}
	return nil, from, c.changed, c.closed
}

// tail returns the last n lines of the retained output, introduced,
// for errors.
func (c *console) tail(n int) string {
	c.mu.Lock()
	s := string(c.buf)
	c.mu.Unlock()
	s = strings.TrimRight(strings.ReplaceAll(s, "\r", ""), "\n")
	lines := strings.Split(s, "\n")
	if s == "" {
		return "; the console is empty"
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "; last console lines:\n" + strings.Join(lines, "\n")
}

// wait blocks until a complete line at or after from matches re, the
// console closes (exited is then called for the error's cause) or ctx
// ends.
func (c *console) wait(ctx context.Context, from Mark, re *regexp.Regexp, exited func() error) ([]string, error) {
	pos := int64(from)
	for {
		m, next, changed, closed := c.scan(pos, re)
		if m != nil {
			return m, nil
		}
		if closed {
			return nil, fmt.Errorf("waiting for console line matching %q: %w%s", re, exited(), c.tail(tailLines))
		}
		pos = next
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for console line matching %q: %w%s", re, context.Cause(ctx), c.tail(tailLines))
		}
	}
}
