package sim

import (
	"slices"
	"sync"
	"time"
)

// maxSamples bounds a Recorder's memory (8 bytes a sample): past it,
// samples replace random earlier ones (reservoir sampling), so quantiles
// stay fair over a long run.
const maxSamples = 1 << 20

// Recorder records latencies and reports their quantiles. Safe for
// concurrent use; the zero value is ready.
type Recorder struct {
	mu    sync.Mutex
	ns    []int64
	n     int64 // samples seen
	max   time.Duration
	rng   uint64
	total time.Duration
}

// Add records one latency.
func (r *Recorder) Add(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	r.total += d
	r.max = max(r.max, d)
	if len(r.ns) < maxSamples {
		r.ns = append(r.ns, int64(d))
		return
	}
	// xorshift: cheap, and good enough to pick which sample to replace.
	r.rng ^= r.rng<<13 | 1
	r.rng ^= r.rng >> 7
	r.rng ^= r.rng << 17
	if i := r.rng % uint64(r.n); i < maxSamples {
		r.ns[i] = int64(d)
	}
}

// Count is the number of latencies recorded.
func (r *Recorder) Count() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// Quantile returns the q-quantile (0 <= q <= 1) of the latencies, by the
// nearest-rank method; 0 with none.
func (r *Recorder) Quantile(q float64) time.Duration {
	r.mu.Lock()
	s := slices.Clone(r.ns)
	r.mu.Unlock()
	if len(s) == 0 {
		return 0
	}
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	i = min(max(i, 0), len(s)-1)
	return time.Duration(s[i])
}

// P50 and P99 are the median and the 99th percentile.
func (r *Recorder) P50() time.Duration { return r.Quantile(0.50) }
func (r *Recorder) P99() time.Duration { return r.Quantile(0.99) }

// Max is the largest latency recorded.
func (r *Recorder) Max() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.max
}

// Mean is the average latency.
func (r *Recorder) Mean() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == 0 {
		return 0
	}
	return r.total / time.Duration(r.n)
}
