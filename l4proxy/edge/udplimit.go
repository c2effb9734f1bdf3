package edge

import (
	"hash/maphash"
	"net/netip"
	"sync/atomic"
	"time"
)

// rate is a limit of n events per second with a burst of n: GCRA's emission
// interval and tolerance, in nanoseconds.
type rate struct {
	interval int64 // between two events at the sustained rate
	tau      int64 // how far ahead of the clock a burst may run
}

// perSecond returns the rate of n events per second with a burst of n
// (one second's worth). n must be positive.
func perSecond(n int) rate {
	iv := max(int64(time.Second)/int64(n), 1)
	return rate{interval: iv, tau: iv * int64(n-1)}
}

// gcra is a token bucket in one word: the generic cell rate algorithm keeps
// the theoretical arrival time (TAT) of the next event at the sustained
// rate. An event is allowed when the TAT is no further than the burst
// tolerance ahead of now, and pushes the TAT one interval on. The zero
// value is a full bucket. Safe for concurrent use; never allocates.
type gcra struct{ tat atomic.Int64 }

// allow reports whether one more event at now (unix nanoseconds) fits r,
// and takes it if so.
func (g *gcra) allow(now int64, r rate) bool {
	for {
		old := g.tat.Load()
		tat := max(old, now)
		if tat-now > r.tau {
			return false
		}
		if g.tat.CompareAndSwap(old, tat+r.interval) {
			return true
		}
	}
}

// prefixBuckets is the number of buckets of a [prefixLimiter]: 32 KiB.
const prefixBuckets = 4096

// prefixLimiter rate-limits events per source prefix (/24 for IPv4, /64 for
// IPv6) in a fixed table of buckets, whatever the number of prefixes seen: a
// flood from random spoofed prefixes cannot grow it. A prefix is hashed
// with a random seed to its bucket, so prefixes that share one (about one
// in prefixBuckets) share its rate, and an attacker cannot choose which
// prefix his own lands with.
type prefixLimiter struct {
	seed    maphash.Seed
	rate    rate
	buckets [prefixBuckets]gcra
}

func newPrefixLimiter(perSec int) *prefixLimiter {
	return &prefixLimiter{seed: maphash.MakeSeed(), rate: perSecond(perSec)}
}

// sourcePrefix returns the /24 or /64 that a holds a source address to.
func sourcePrefix(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 64
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return p
}

// allow reports whether one more event from a's prefix fits the rate at now.
func (p *prefixLimiter) allow(a netip.Addr, now int64) bool {
	return p.bucket(a).allow(now, p.rate)
}

// bucket returns the bucket of a's prefix.
func (p *prefixLimiter) bucket(a netip.Addr) *gcra {
	// The prefix's bytes, with the family: 10.0.0.0/24 and ::a00:0/64
	// must not be one key.
	var key [9]byte
	a = a.Unmap()
	if a.Is4() {
		b := a.As4()
		key[0] = 4
		copy(key[1:4], b[:3])
	} else {
		b := a.As16()
		key[0] = 6
		copy(key[1:9], b[:8])
	}
	return &p.buckets[maphash.Bytes(p.seed, key[:])%prefixBuckets]
}

// logLimiter lets one log line through per second and counts the ones it
// held back, so that a flood of refusals costs no more than one line a
// second (the metrics count each one). Safe for concurrent use.
type logLimiter struct {
	next       atomic.Int64 // unix nanoseconds from which a line may go out
	suppressed atomic.Int64
}

// allow reports whether a line may be logged at now and, if so, how many
// were held back since the last one.
func (l *logLimiter) allow(now int64) (ok bool, suppressed int64) {
	next := l.next.Load()
	if now < next || !l.next.CompareAndSwap(next, now+int64(time.Second)) {
		l.suppressed.Add(1)
		return false, 0
	}
	return true, l.suppressed.Swap(0)
}
