package sim

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// RunOptions configures Run.
type RunOptions struct {
	// Rate is the check-ins per second across the fleet; devices take
	// turns (round robin). 0: as fast as Concurrency allows.
	Rate float64
	// Duration is how long to run.
	Duration time.Duration
	// Concurrency caps the check-ins in flight (default 256, at most N).
	Concurrency int
	// ReportFraction of the check-ins also post a status report (a state
	// change), spread evenly.
	ReportFraction float64
	// Limit, when positive, ends the run after this many check-ins
	// (Limit = N: each device once).
	Limit int64
}

// Result is what a Run measured.
type Result struct {
	Elapsed time.Duration
	// CheckIns counts the check-ins that completed (a poll, plus a report
	// for ReportFraction of them), Reports the reports the server took,
	// NotModified the polls answered 304.
	CheckIns, Reports, NotModified int64
	// Errors counts failed polls and reports; FirstErr is the first.
	Errors   int64
	FirstErr error
	// Poll and Report are the latencies of the requests alone; CheckIn
	// is a whole check-in's, from its scheduled start when Rate is set,
	// so time spent waiting for a free slot counts (no coordinated
	// omission).
	Poll, Report, CheckIn Recorder
	// Late counts the check-ins that started more than 50 ms after their
	// scheduled time: the load generator could not keep the rate.
	Late int64
}

// PerSecond is the check-ins completed per second.
func (r *Result) PerSecond() float64 { return float64(r.CheckIns) / r.Elapsed.Seconds() }

// Run makes the fleet check in for o.Duration: each check-in is a poll
// (Device.Poll), then for o.ReportFraction of them a status report
// (Device.Report), then Device.Drop.
func (f *Fleet) Run(ctx context.Context, o RunOptions) *Result {
	conc := o.Concurrency
	if conc <= 0 {
		conc = 256
	}
	conc = min(conc, len(f.Devices))
	res := &Result{}
	var errOnce sync.Once
	fail := func(err error) {
		atomic.AddInt64(&res.Errors, 1)
		errOnce.Do(func() { res.FirstErr = err })
	}
	ctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	start := time.Now()
	for k := int64(0); o.Limit <= 0 || k < o.Limit; k++ {
		at := time.Now()
		if o.Rate > 0 {
			at = start.Add(time.Duration(float64(k) / o.Rate * float64(time.Second)))
			if wait := time.Until(at); wait > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(wait):
				}
			}
		}
		select {
		case <-ctx.Done():
		case sem <- struct{}{}:
		}
		if ctx.Err() != nil {
			break
		}
		if o.Rate > 0 && time.Since(at) > 50*time.Millisecond {
			atomic.AddInt64(&res.Late, 1)
		}
		report := int64(float64(k+1)*o.ReportFraction) > int64(float64(k)*o.ReportFraction)
		d := f.Devices[k%int64(len(f.Devices))]
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			defer d.Drop()
			// A check-in started before the end runs to its end.
			rctx := context.WithoutCancel(ctx)
			t := time.Now()
			code, err := d.Poll(rctx)
			if err != nil {
				fail(err)
				return
			}
			if code == http.StatusNotModified {
				atomic.AddInt64(&res.NotModified, 1)
			}
			res.Poll.Add(time.Since(t))
			if report {
				t := time.Now()
				if err := d.Report(rctx); err != nil {
					fail(err)
					return
				}
				res.Report.Add(time.Since(t))
				atomic.AddInt64(&res.Reports, 1)
			}
			res.CheckIn.Add(time.Since(at))
			atomic.AddInt64(&res.CheckIns, 1)
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	return res
}

// Join posts one report from every device, conc at a time, so that each
// joins the organization of the join token; a refusal for a rate (429) or
// a busy database (503) is tried again after a pause. It returns the
// first other error.
func (f *Fleet) Join(ctx context.Context, conc int) error {
	conc = max(1, min(conc, len(f.Devices)))
	next := make(chan *Device)
	errc := make(chan error, conc)
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range next {
				if err := joinOne(ctx, d); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	var err error
feed:
	for _, d := range f.Devices {
		select {
		case next <- d:
		case err = <-errc:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errc:
		default:
		}
	}
	return err
}

func joinOne(ctx context.Context, d *Device) error {
	defer d.Drop()
	pause := 50 * time.Millisecond
	for {
		err := d.Report(ctx)
		if err == nil || !(IsStatus(err, http.StatusTooManyRequests) || IsStatus(err, http.StatusServiceUnavailable)) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, 2*time.Second)
	}
}
