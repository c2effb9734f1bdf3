package console

import (
	"net/netip"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

// TestSourceOf: a source is an IPv4 address (also written as IPv6) or an
// IPv6 /64.
func TestSourceOf(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"198.18.0.1:1", "[::ffff:198.18.0.1]:2"},
		{"[2001:db8:1:2::1]:1", "[2001:db8:1:2:ffff:ffff:ffff:ffff]:2"},
		{"[fe80::1%eth0]:1", "[fe80::2]:1"},
	} {
		if sourceOf(tc.a) != sourceOf(tc.b) {
			t.Errorf("%s and %s are different sources: %v %v", tc.a, tc.b, sourceOf(tc.a), sourceOf(tc.b))
		}
	}
	for _, tc := range []struct{ a, b string }{
		{"198.18.0.1:1", "198.18.0.2:1"},
		{"[2001:db8:1:2::1]:1", "[2001:db8:1:3::1]:1"},
	} {
		if sourceOf(tc.a) == sourceOf(tc.b) {
			t.Errorf("%s and %s are one source", tc.a, tc.b)
		}
	}
	if s := tunnel.SourceString(sourceOf("[2001:db8:1:2::1]:1")); s != "2001:db8:1:2::/64" {
		t.Errorf("sourceString %q", s)
	}
}

// TestLimiterTable: the table holds at most maxSources; a full one
// refuses new sources (not forgetting the locked-out ones) until entries
// are idle for limitForget.
func TestLimiterTable(t *testing.T) {
	var l loginLimiter
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	locked := netip.MustParseAddr("198.18.255.255")
	for range loginBudget {
		l.admit(locked, now)
	}
	for i := range maxSources - 1 {
		a := netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)})
		if w := l.admit(a, now); w != 0 {
			t.Fatalf("source %d refused (%v) before the table is full", i, w)
		}
	}
	if w := l.admit(netip.MustParseAddr("198.18.1.1"), now); w != tableFullWait {
		t.Errorf("a new source with the table full: wait %v, want %v", w, tableFullWait)
	}
	if w := l.admit(locked, now.Add(time.Second)); w == 0 {
		t.Error("the locked-out source was let in while the table was full")
	}
	if len(l.m) > maxSources {
		t.Errorf("%d sources held", len(l.m))
	}
	later := now.Add(limitForget)
	if w := l.admit(netip.MustParseAddr("198.18.1.1"), later); w != 0 {
		t.Errorf("a new source once the others were idle for %v: wait %v", limitForget, w)
	}
	if len(l.m) != 1 {
		t.Errorf("%d sources held after the sweep, want 1", len(l.m))
	}
	// The lock-outs double up to lockMax.
	var m loginLimiter
	a := netip.MustParseAddr("198.18.0.1")
	var locks []time.Duration
	for i := range 40 {
		if w := m.admit(a, now); w != 0 {
			t.Fatalf("try %d refused (%v) at the end of the lock", i+1, w)
		}
		lock := m.m[a].until.Sub(now)
		if i+1 < loginBudget {
			if lock > 0 {
				t.Fatalf("try %d locked the source out within the budget", i+1)
			}
			continue
		}
		if w := m.admit(a, now.Add(lock-time.Nanosecond)); w != time.Nanosecond {
			t.Fatalf("try %d: a try just before the lock's end waits %v", i+1, w)
		}
		locks = append(locks, lock)
		now = now.Add(lock)
	}
	if locks[0] != lockBase || locks[1] != 2*lockBase || locks[2] != 4*lockBase || locks[len(locks)-1] != lockMax {
		t.Errorf("lock-outs %v: want %v doubling up to %v", locks, lockBase, lockMax)
	}
}
