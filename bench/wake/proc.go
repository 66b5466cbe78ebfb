package wake

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times (100 on
// every Linux architecture Go runs on).
const clockTicks = 100

// ProcStat reads a process's CPU time (user + system) and resident set.
func ProcStat(pid int) (cpu time.Duration, rss int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command name, which is in parentheses and may
	// hold spaces: state is field 3, utime 14, stime 15, rss 24.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 22 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	pages, _ := strconv.ParseInt(f[21], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks, pages * int64(os.Getpagesize()), nil
}

// Sampler samples the summed CPU time and RSS of a set of processes every
// interval, for peaks; the set may change (a restarted server).
type Sampler struct {
	mu      sync.Mutex
	pids    []int
	samples []sample
}

type sample struct {
	at  time.Time
	cpu time.Duration
	rss int64
}

// StartSampler samples pids every interval until ctx ends.
func StartSampler(ctx context.Context, interval time.Duration, pids ...int) *Sampler {
	s := &Sampler{pids: pids}
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			s.take()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// SetPIDs replaces the processes sampled. CPU counts restart from the new
// processes' own.
func (s *Sampler) SetPIDs(pids ...int) {
	s.mu.Lock()
	s.pids = pids
	s.samples = nil
	s.mu.Unlock()
}

func (s *Sampler) take() {
	s.mu.Lock()
	defer s.mu.Unlock()
	var smp sample
	smp.at = time.Now()
	for _, p := range s.pids {
		cpu, rss, err := ProcStat(p)
		if err == nil {
			smp.cpu += cpu
			smp.rss += rss
		}
	}
	s.samples = append(s.samples, smp)
}

// Now returns the CPU time and RSS of the processes, read now.
func (s *Sampler) Now() (time.Duration, int64) {
	s.take()
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.samples[len(s.samples)-1]
	return l.cpu, l.rss
}

// Peak returns, between from and to, the highest CPU use over one
// sampling interval (1.0 = one core) and the highest RSS.
func (s *Sampler) Peak(from, to time.Time) (cpu float64, rss int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 1; i < len(s.samples); i++ {
		a, b := s.samples[i-1], s.samples[i]
		if b.at.Before(from) || a.at.After(to) {
			continue
		}
		if d := b.at.Sub(a.at); d > 0 {
			cpu = max(cpu, float64(b.cpu-a.cpu)/float64(d))
		}
		rss = max(rss, b.rss)
	}
	return cpu, rss
}

// RaiseFileLimit sets RLIMIT_NOFILE's soft and hard limits to at least
// want (raising the hard one needs CAP_SYS_RESOURCE). Processes started
// afterwards (the broker, nginx, the server) inherit it. It returns the
// limits before and after.
func RaiseFileLimit(want uint64) (before, after unix.Rlimit, err error) {
	if err = unix.Getrlimit(unix.RLIMIT_NOFILE, &before); err != nil {
		return
	}
	after = before
	if after.Max < want {
		after.Max = want
	}
	after.Cur = after.Max
	if err = unix.Setrlimit(unix.RLIMIT_NOFILE, &after); err != nil {
		// Not root: the hard limit is the most we get.
		after = before
		after.Cur = after.Max
		err = unix.Setrlimit(unix.RLIMIT_NOFILE, &after)
	}
	return
}
