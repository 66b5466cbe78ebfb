package agent

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

// Locks are named application locks that defer installing and rebooting
// into a release. Each lock lasts at most MaxHold from when it was taken
// (a crashed application cannot block updates forever); taking a held
// lock again renews it. Safe for concurrent use: the local API takes and
// releases locks while the agent waits on them.
type Locks struct {
	MaxHold time.Duration
	Now     func() time.Time // the clock; nil is time.Now

	mu      sync.Mutex
	held    map[string]LockInfo
	changed chan struct{} // closed and replaced at every change
}

// maxLocks caps how many locks may be held at once.
const maxLocks = 64

var lockNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

func (l *Locks) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

func (l *Locks) notify() {
	if l.changed != nil {
		close(l.changed)
	}
	l.changed = make(chan struct{})
}

// Take takes (or renews) the lock name for owner. The lock expires after
// MaxHold; ttl, when shorter and positive, ends it sooner.
func (l *Locks) Take(name, owner string, ttl time.Duration) (LockInfo, error) {
	if !lockNameRE.MatchString(name) {
		return LockInfo{}, fmt.Errorf("lock name: expected [A-Za-z0-9][A-Za-z0-9_.-]* (at most 63 characters), got %q", name)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expire()
	if _, ok := l.held[name]; !ok && len(l.held) >= maxLocks {
		return LockInfo{}, fmt.Errorf("lock %s: %d locks are held already, the most allowed", name, maxLocks)
	}
	now := l.now().UTC()
	hold := l.MaxHold
	if ttl > 0 && ttl < hold {
		hold = ttl
	}
	if l.held == nil {
		l.held = map[string]LockInfo{}
	}
	li := LockInfo{Name: name, Owner: owner, Since: now, Expires: now.Add(hold)}
	if old, ok := l.held[name]; ok {
		li.Since = old.Since
	}
	l.held[name] = li
	l.notify()
	return li, nil
}

// Release releases the lock name; it reports whether it was held.
func (l *Locks) Release(name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expire()
	_, ok := l.held[name]
	delete(l.held, name)
	l.notify()
	return ok
}

// expire drops the locks past their time; l.mu is held.
func (l *Locks) expire() {
	now := l.now()
	for n, li := range l.held {
		if !now.Before(li.Expires) {
			delete(l.held, n)
		}
	}
}

// Held returns the locks held now, by name, and a channel closed at the
// next change (a take or a release; expiry is the caller's to wait for).
func (l *Locks) Held() ([]LockInfo, <-chan struct{}) {
	if l == nil {
		return nil, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expire()
	if l.changed == nil {
		l.changed = make(chan struct{})
	}
	out := make([]LockInfo, 0, len(l.held))
	for _, li := range l.held {
		out = append(out, li)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, l.changed
}

// describeLocks says which locks are held, for State.Reason.
func describeLocks(held []LockInfo) string {
	var parts []string
	for _, li := range held {
		s := "lock " + li.Name
		if li.Owner != "" {
			s += " (" + li.Owner + ")"
		}
		parts = append(parts, s+" held since "+li.Since.Format(time.RFC3339)+", at most until "+li.Expires.Format(time.RFC3339))
	}
	return strings.Join(parts, "; ")
}
