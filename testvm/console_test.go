package testvm

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestConsoleScan(t *testing.T) {
	tests := []struct {
		name    string
		writes  []string
		closed  bool
		from    Mark
		pattern string
		want    []string // nil: no match yet
	}{
		{"whole line", []string{"Linux version 6.1.0 (gcc)\n"}, false, 0, `Linux version (\S+)`, []string{"Linux version 6.1.0", "6.1.0"}},
		{"split across writes", []string{"Linux ver", "sion 6.1.0\n"}, false, 0, `Linux version (\S+)`, []string{"Linux version 6.1.0", "6.1.0"}},
		{"incomplete line waits", []string{"Linux version 6.1.0"}, false, 0, `Linux version (\S+)`, nil},
		{"incomplete line counts once closed", []string{"Linux version 6.1.0"}, true, 0, `Linux version (\S+)`, []string{"Linux version 6.1.0", "6.1.0"}},
		{"carriage return stripped", []string{"login: ok\r\n"}, false, 0, `ok$`, []string{"ok"}},
		{"first match wins", []string{"boot 1\nboot 2\n"}, false, 0, `boot (\d)`, []string{"boot 1", "1"}},
		{"from a mark", []string{"boot 1\nboot 2\n"}, false, 7, `boot (\d)`, []string{"boot 2", "2"}},
		{"no match", []string{"a\nb\n"}, true, 0, `c`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newConsole(maxConsole)
			for _, w := range tt.writes {
				c.Write([]byte(w))
			}
			if tt.closed {
				c.close()
			}
			got, _, _, _ := c.scan(int64(tt.from), regexp.MustCompile(tt.pattern))
			if !slices.Equal(got, tt.want) {
				t.Errorf("scan(%d, %q) = %q, want %q", tt.from, tt.pattern, got, tt.want)
			}
		})
	}
}

func TestConsoleMark(t *testing.T) {
	c := newConsole(maxConsole)
	c.Write([]byte("Linux version 1\nKernel panic\nLinux ver"))
	m := c.mark()
	if got, want := m, Mark(len("Linux version 1\nKernel panic\n")); got != want {
		t.Fatalf("mark() = %d, want %d (start of the line being written)", got, want)
	}
	c.Write([]byte("sion 2\n"))
	got, err := c.wait(t.Context(), m, regexp.MustCompile(`Linux version (\d)`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"Linux version 2", "2"}) {
		t.Errorf("wait after mark = %q, want the second boot's line", got)
	}
}

func TestConsoleTrim(t *testing.T) {
	c := newConsole(64)
	for i := range 20 {
		c.Write([]byte(strings.Repeat("x", 9) + string(rune('a'+i)) + "\n"))
	}
	s := c.String()
	if len(s) > 64 {
		t.Errorf("kept %d bytes, want at most 64", len(s))
	}
	if !strings.HasSuffix(s, "xxxxxxxxxt\n") || !strings.HasPrefix(s, "x") {
		t.Errorf("kept %q, want whole lines ending with the newest", s)
	}
	// A mark from before the trim still works: it scans from what is kept.
	got, err := c.wait(t.Context(), 0, regexp.MustCompile(`x(t)$`), nil)
	if err != nil || !slices.Equal(got, []string{"xt", "t"}) {
		t.Errorf("wait after trim = %q, %v; want [xt t]", got, err)
	}
	if got, want := c.mark(), Mark(20*11); got != want {
		t.Errorf("mark() after trim = %d, want absolute offset %d", got, want)
	}
}

func TestConsoleWaitEnds(t *testing.T) {
	exitErr := errors.New("qemu exit status 1 before a match")
	t.Run("closed", func(t *testing.T) {
		c := newConsole(maxConsole)
		for i := range 30 {
			c.Write([]byte("line " + string(rune('A'+i)) + "\n"))
		}
		go c.close()
		_, err := c.wait(t.Context(), 0, regexp.MustCompile(`never`), func() error { return exitErr })
		if !errors.Is(err, exitErr) {
			t.Fatalf("wait on a closed console = %v, want it to wrap %v", err, exitErr)
		}
		// The last 20 lines are quoted: line K (index 10) to line ^ (index 29).
		if !strings.Contains(err.Error(), "\nline K\n") || strings.Contains(err.Error(), "line J") || !strings.HasSuffix(err.Error(), "line ^") {
			t.Errorf("error %q: want the last 20 console lines", err)
		}
	})
	t.Run("context", func(t *testing.T) {
		c := newConsole(maxConsole)
		c.Write([]byte("booting\n"))
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, err := c.wait(ctx, 0, regexp.MustCompile(`never`), nil)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "booting") {
			t.Errorf("wait past deadline = %v, want DeadlineExceeded quoting the console", err)
		}
	})
	t.Run("line arrives later", func(t *testing.T) {
		c := newConsole(maxConsole)
		go func() {
			time.Sleep(20 * time.Millisecond)
			c.Write([]byte("Kernel panic - not syncing: VFS\n"))
		}()
		got, err := c.wait(t.Context(), 0, regexp.MustCompile(`Kernel panic`), nil)
		if err != nil || len(got) != 1 {
			t.Errorf("wait = %q, %v; want the panic line", got, err)
		}
	})
}
