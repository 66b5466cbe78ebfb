package wake

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/plumb-os/plumb/bench/sim"
)

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
		if pr, err := sim.ReadProc(p); err == nil {
			smp.cpu += pr.CPU
			smp.rss += pr.RSS
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

// Peak returns, between from and to, the highest CPU use over any 1 s
// window (1.0 = one core; /proc counts in 10 ms ticks, and a sampler
// delayed by a busy machine makes shorter windows meaningless) and the
// highest RSS.
func (s *Sampler) Peak(from, to time.Time) (cpu float64, rss int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := 0
	for i, b := range s.samples {
		if b.at.Before(from) || b.at.After(to) {
			continue
		}
		rss = max(rss, b.rss)
		for j < i && b.at.Sub(s.samples[j+1].at) >= time.Second {
			j++
		}
		if a := s.samples[j]; b.at.Sub(a.at) >= time.Second && !a.at.Before(from.Add(-time.Second)) {
			cpu = max(cpu, float64(b.cpu-a.cpu)/float64(b.at.Sub(a.at)))
		}
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
