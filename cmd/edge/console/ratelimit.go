package console

// The login limit: per source (an IPv4 address or an IPv6 /64, as the
// edge's other per-source limits count them), loginBudget tries at once;
// the last of them, and each further one, locks the source out for twice
// as long as the one before (lockBase, 2*lockBase, ... up to lockMax). A try counts as a failure from the moment it
// is admitted, so parallel tries cannot all slip in before the first
// failure is recorded; a successful login forgets the source. The table
// is bounded: a full table refuses new sources, as the WireGuard hub's
// handshake limiter does, rather than forget the ones it holds.

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

const (
	loginBudget   = 5                // tries before the back-off starts
	lockBase      = 10 * time.Second // the first lock-out
	lockMax       = 15 * time.Minute // the longest lock-out
	limitForget   = time.Hour        // a source without a try this long is forgotten
	maxSources    = 4096             // sources in the table
	failLogEvery  = 10 * time.Second // at most one log line per this about failed logins
	tableFullWait = time.Minute      // Retry-After when the table is full
)

// sourceOf is the source a limit counts for a request's remote address.
func sourceOf(remote string) netip.Addr {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{} // one bucket for whatever has no address
	}
	return tunnel.SourceOf(a)
}

type tries struct {
	n     int       // tries counted (failed, or under way)
	until time.Time // locked out until then
	last  time.Time // the last try
}

type loginLimiter struct {
	mu    sync.Mutex
	m     map[netip.Addr]*tries
	swept time.Time
}

// admit counts a try from src; it returns how long to wait instead if
// src is locked out (or the table is full).
func (l *loginLimiter) admit(src netip.Addr, now time.Time) (wait time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = make(map[netip.Addr]*tries)
	}
	if now.Sub(l.swept) >= time.Minute || len(l.m) >= maxSources {
		l.sweepLocked(now)
	}
	t := l.m[src]
	if t == nil {
		if len(l.m) >= maxSources {
			return tableFullWait
		}
		t = &tries{}
		l.m[src] = t
	}
	if now.Before(t.until) {
		return t.until.Sub(now)
	}
	t.n++
	t.last = now
	if t.n >= loginBudget {
		lock := lockBase << min(t.n-loginBudget, 20)
		t.until = now.Add(min(lock, lockMax))
	}
	return 0
}

// succeeded forgets src's tries: the password was right.
func (l *loginLimiter) succeeded(src netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, src)
}

// sweepLocked forgets the sources not locked out and idle for limitForget.
func (l *loginLimiter) sweepLocked(now time.Time) {
	for k, t := range l.m {
		if now.Sub(t.last) >= limitForget && !now.Before(t.until) {
			delete(l.m, k)
		}
	}
	l.swept = now
}
