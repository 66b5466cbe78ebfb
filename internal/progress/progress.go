// Package progress reports long work to a person: a sequence of named
// steps with their timings, and a byte bar inside a step that moves data.
//
// On a terminal each step gets a line with its time and byte-moving steps
// draw a bar (github.com/schollz/progressbar). Elsewhere (pipes, CI) it prints
// one line per finished step, or nothing when quiet. Not safe for concurrent
// use, except the io.Writer a Step returns from Bytes.
package progress

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Reporter prints steps to w.
type Reporter struct {
	w           io.Writer
	interactive bool
	quiet       bool
	steps       []Timing
}

// Timing is one finished step.
type Timing struct {
	Name     string
	Duration time.Duration
}

// New returns a reporter writing to w. It draws bars only when w is a
// terminal; quiet suppresses everything but Summary.
func New(w io.Writer, quiet bool) *Reporter {
	interactive := false
	if f, ok := w.(*os.File); ok {
		interactive = term.IsTerminal(int(f.Fd()))
	}
	return &Reporter{w: w, interactive: interactive && !quiet, quiet: quiet}
}

// Discard returns a reporter that prints nothing.
func Discard() *Reporter { return &Reporter{w: io.Discard, quiet: true} }

// Step is a running step.
type Step struct {
	r     *Reporter
	name  string
	start time.Time
	bar   *progressbar.ProgressBar
}

// Start begins a step.
func (r *Reporter) Start(name string) *Step {
	if r == nil {
		r = Discard()
	}
	return &Step{r: r, name: name, start: time.Now()}
}

// Bytes returns a writer that advances a bar of total bytes (a spinner when
// total is negative). Write to it as data moves; it never fails.
func (s *Step) Bytes(total int64) io.Writer {
	if !s.r.interactive {
		return io.Discard
	}
	s.bar = progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(s.r.w),
		progressbar.OptionSetDescription(s.name),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
	return s.bar
}

// Done ends the step and records its time.
func (s *Step) Done() {
	d := time.Since(s.start)
	if s.bar != nil {
		s.bar.Finish()
	}
	s.r.steps = append(s.r.steps, Timing{s.name, d})
	if !s.r.quiet {
		fmt.Fprintf(s.r.w, "  %-28s %7.2fs\n", s.name, d.Seconds())
	}
}

// Timings returns the finished steps in order.
func (r *Reporter) Timings() []Timing { return r.steps }
