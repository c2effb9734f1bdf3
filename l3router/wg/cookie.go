//go:build linux

package wg

import (
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// Under load (more handshake messages than half the device's budget in
// the last second), the device answers a handshake message that carries no
// valid mac2 with a cookie reply instead of processing it, as the protocol
// prescribes: the peer's next attempt proves its address with the cookie,
// and proven sources are then limited one by one, so that a flood from
// spoofed or few addresses cannot take every peer's handshakes down with
// it.
//
// A source is an IPv4 address or an IPv6 /64, as kernel WireGuard counts
// them: whoever holds a /64 holds 2^64 addresses and would otherwise get a
// fresh limit for each. Each source has a token bucket (perAddrPerSecond,
// perAddrBurst) in a table of at most maxAddrLimits entries. An entry idle
// for limitIdle has refilled to its burst, the state a new entry starts
// in, so it is forgotten at no cost to the limit; the table is swept of
// those once per limitIdle. A full table refuses new sources until entries
// expire (as the kernel's does): old entries are never wiped to make room,
// which would hand every source a fresh burst.

const (
	perAddrPerSecond = 20
	perAddrBurst     = 5
	maxAddrLimits    = 1 << 14
	// limitIdle is how long a source's entry lives without messages:
	// longer than the bucket takes to refill (perAddrBurst/perAddrPerSecond).
	limitIdle = time.Second
	// limitLogEvery spaces the warnings about refused sources.
	limitLogEvery = 10 * time.Second
)

type cookieJar struct {
	mu        sync.Mutex
	secret    [32]byte
	secretSet int64 // device clock; rotated every cookieRefreshTime
	hasSecret bool
	limits    map[netip.Addr]bucket // by limitKey
	swept     int64                 // device clock of the last sweep
	logged    int64                 // device clock of the last warning; 0: none yet
}

// hsCounters are the device's HandshakeStats counters.
type hsCounters struct {
	processed, proven, overBudget, cookies, sourceLimited, tableFull atomic.Uint64
}

// HandshakeStats returns the handshake counters.
func (d *Device) HandshakeStats() HandshakeStats {
	c := &d.hsCount
	d.cookies.mu.Lock()
	n := len(d.cookies.limits)
	d.cookies.mu.Unlock()
	return HandshakeStats{Processed: c.processed.Load(), Proven: c.proven.Load(), OverBudget: c.overBudget.Load(), Cookies: c.cookies.Load(),
		SourceLimited: c.sourceLimited.Load(), TableFull: c.tableFull.Load(), Sources: n, Rejected: d.rejected.snapshot()}
}

// underLoad reports whether the handshake budget is more than half spent.
func (d *Device) underLoad(now int64) bool {
	if underLoadForTest.Load() {
		return true
	}
	d.hsMu.Lock()
	defer d.hsMu.Unlock()
	d.hsBucket.refill(now, handshakesPerSecond, handshakesPerSecond)
	return d.hsBucket.tokens < handshakesPerSecond/2
}

// underLoadForTest makes the device always under load.
var underLoadForTest atomic.Bool

// cookie returns the cookie of src now: MAC(secret, address and port).
func (d *Device) cookie(src netip.AddrPort, now int64) [16]byte {
	j := &d.cookies
	j.mu.Lock()
	if !j.hasSecret || now-j.secretSet >= int64(cookieRefreshTime) {
		rand.Read(j.secret[:])
		j.secretSet, j.hasSecret = now, true
	}
	secret := j.secret
	j.mu.Unlock()
	b, _ := src.MarshalBinary()
	var c [16]byte
	mac(c[:], secret[:], b)
	return c
}

// checkMAC2 reports whether msg's mac2 is keyed by src's cookie.
func (d *Device) checkMAC2(msg []byte, src netip.AddrPort, now int64) bool {
	c := d.cookie(src, now)
	n := len(msg)
	var want [16]byte
	mac(want[:], c[:], msg[:n-16])
	return subtle.ConstantTimeCompare(want[:], msg[n-16:]) == 1
}

// sendCookie answers msg (a handshake message from src) with a cookie
// reply.
func (d *Device) sendCookie(msg []byte, src netip.AddrPort, now int64) {
	c := d.cookie(src, now)
	reply := make([]byte, sizeCookie)
	reply[0] = typeCookie
	copy(reply[4:8], msg[4:8]) // the sender index of msg
	rand.Read(reply[8:32])
	n := len(msg)
	a, _ := chacha20poly1305.NewX(d.id.cookieKey[:])
	a.Seal(reply[32:32], reply[8:32], c[:], msg[n-32:n-16])
	d.sendControl(src, reply)
	d.hsCount.cookies.Add(1)
}

// limitKey is the source a handshake limit counts: an IPv4 address, or
// the /64 of an IPv6 address.
func limitKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is4() {
		return a
	}
	b := a.As16()
	clear(b[8:])
	return netip.AddrFrom16(b)
}

// allowAddr is the per-source limit of handshakes under load.
func (d *Device) allowAddr(a netip.Addr, now int64) bool {
	k := limitKey(a)
	j := &d.cookies
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.limits == nil {
		j.limits = map[netip.Addr]bucket{}
	}
	if now-j.swept >= int64(limitIdle) {
		j.sweep(now)
	}
	b, ok := j.limits[k]
	if !ok {
		if len(j.limits) >= maxAddrLimits {
			d.hsCount.tableFull.Add(1)
			d.warnLimited(now, errTableFull, k)
			return false
		}
		b = bucket{tokens: perAddrBurst, last: now}
	}
	ok = b.take(now, perAddrPerSecond, perAddrBurst)
	j.limits[k] = b
	if !ok {
		d.hsCount.sourceLimited.Add(1)
		d.warnLimited(now, errSourceLimit, k)
	}
	return ok
}

// sweep forgets the sources idle for limitIdle. j.mu is held.
func (j *cookieJar) sweep(now int64) {
	for k, b := range j.limits {
		if now-b.last >= int64(limitIdle) {
			delete(j.limits, k)
		}
	}
	j.swept = now
}

// The refusals of allowAddr, as logged.
var (
	errSourceLimit = fmt.Errorf("handshake limit under load (%d/s, burst %d, per IPv4 address or IPv6 /64) reached", perAddrPerSecond, perAddrBurst)
	errTableFull   = fmt.Errorf("table of handshake limits full (%d sources): new sources refused until entries are idle for %v", maxAddrLimits, limitIdle)
)

// warnLimited logs a refusal, once per limitLogEvery. d.cookies.mu is
// held.
func (d *Device) warnLimited(now int64, why error, k netip.Addr) {
	j := &d.cookies
	if j.logged != 0 && now-j.logged < int64(limitLogEvery) {
		return
	}
	j.logged = now
	src := k.String()
	if k.Is6() {
		src = netip.PrefixFrom(k, 64).String()
	}
	d.log.Warn("l3 wireguard: "+why.Error(), "source", src, "refused_source_limit", d.hsCount.sourceLimited.Load(),
		"refused_table_full", d.hsCount.tableFull.Load())
}

// admitHandshake decides whether to process a handshake message (mac1
// checked) from src: within the budget when not under load; under load
// only with a valid mac2 (else a cookie reply goes back) and within its
// source's limit (its IPv4 address or IPv6 /64).
func (d *Device) admitHandshake(msg []byte, src netip.AddrPort, now int64) bool {
	if !d.underLoad(now) {
		if !d.allowHandshake(now) {
			d.hsCount.overBudget.Add(1)
			return false
		}
		d.hsCount.processed.Add(1)
		return true
	}
	if !d.checkMAC2(msg, src, now) {
		d.sendCookie(msg, src, now)
		return false
	}
	d.allowHandshake(now) // spend budget, so that the load is seen
	if !d.allowAddr(src.Addr(), now) {
		return false
	}
	d.hsCount.proven.Add(1)
	return true
}
