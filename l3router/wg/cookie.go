//go:build linux

package wg

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Under load (see [HandshakeLimits]), the device answers a handshake
// message that carries no valid mac2 with a cookie reply instead of
// processing it, as the protocol prescribes: the peer's next attempt
// proves its address with the cookie, and proven sources are then limited
// one by one, so that a flood from spoofed or few addresses cannot take
// every peer's handshakes down with it.
//
// Every handshake message with a valid mac1 takes a token of the budget,
// answered with a cookie or not: the load is what arrives, as in
// wireguard-go, whose measure is the length of its queue of handshake
// messages. Were only the processed messages counted, a flood that never
// answers cookies would spend nothing while under load, the budget would
// refill, the device would leave "under load" and process the flood's
// messages (a Diffie-Hellman each) again, at the rate of the budget. And
// the device stays under load for underLoadAfter after it last found its
// budget more than half spent, as kernel WireGuard (UNDER_LOAD_AFTER_TIME)
// and wireguard-go (UnderLoadAfterTime) hold it, so that a flood in bursts
// does not get a full budget at each one.
//
// A source is an IPv4 address or an IPv6 /64, as kernel WireGuard counts
// them: whoever holds a /64 holds 2^64 addresses and would otherwise get a
// fresh limit for each. Each source has a token bucket (PerSourcePerSecond,
// PerSourceBurst) in a table of at most MaxSources entries. An entry idle
// for limitIdle has refilled to its burst, the state a new entry starts
// in, so it is forgotten at no cost to the limit; the table is swept of
// those once per limitIdle. A full table refuses new sources until entries
// expire (as the kernel's does): old entries are never wiped to make room,
// which would hand every source a fresh burst.
//
// Nothing on the way of a message answered with a cookie allocates: the
// MACs are computed with a pooled macState (mac.go), whose buffer holds
// the reply, and the reply's AEAD is made once.

// limitIdle is how long a source's entry lives without messages: at least
// a second, and as long as its bucket takes to refill.
func (l *HandshakeLimits) limitIdle() int64 {
	refill := (int64(l.PerSourceBurst)*int64(time.Second) + int64(l.PerSourcePerSecond) - 1) / int64(l.PerSourcePerSecond)
	return max(int64(time.Second), refill)
}

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
	initsRecv, respsRecv, cookiesRecv, initsSent, respsSent          atomic.Uint64
	underLoadEntered                                                 atomic.Uint64
	// retired holds the completed handshakes of removed peers.
	retired atomic.Uint64
}

// HandshakeStats returns the handshake counters.
func (d *Device) HandshakeStats() HandshakeStats {
	c := &d.hsCount
	d.cookies.mu.Lock()
	n := len(d.cookies.limits)
	d.cookies.mu.Unlock()
	s := HandshakeStats{Processed: c.processed.Load(), Proven: c.proven.Load(), OverBudget: c.overBudget.Load(), Cookies: c.cookies.Load(),
		SourceLimited: c.sourceLimited.Load(), TableFull: c.tableFull.Load(), Sources: n,
		InitiationsReceived: c.initsRecv.Load(), ResponsesReceived: c.respsRecv.Load(), CookieRepliesReceived: c.cookiesRecv.Load(),
		InitiationsSent: c.initsSent.Load(), ResponsesSent: c.respsSent.Load(),
		UnderLoad: d.underLoad(d.now()), UnderLoadEntered: c.underLoadEntered.Load(),
		Rejected: d.rejected.snapshot()}
	// Under d.mu, which RemovePeer holds to move a peer's count to
	// retired: each handshake is counted once.
	d.mu.Lock()
	s.Completed = c.retired.Load()
	for _, p := range d.peers {
		for _, q := range p.allPaths() {
			s.Completed += q.handshakes.Load()
		}
	}
	d.mu.Unlock()
	return s
}

// HandshakeLimits returns the device's handshake limits, defaults filled.
func (d *Device) HandshakeLimits() HandshakeLimits { return d.hs }

// countSent counts a message sent, by its type.
func (d *Device) countSent(msg []byte) {
	if len(msg) < 4 {
		return
	}
	switch binary.LittleEndian.Uint32(msg) {
	case typeInitiation:
		d.hsCount.initsSent.Add(1)
	case typeResponse:
		d.hsCount.respsSent.Add(1)
	case typeCookie:
		d.hsCount.cookies.Add(1)
	}
}

// Drops returns the datagrams dropped before they reached a session or
// the handshake, by reason.
func (d *Device) Drops() [NumDatagramDrops]uint64 {
	var out [NumDatagramDrops]uint64
	for i := range out {
		out[i] = d.drops[i].Load()
	}
	return out
}

// drop counts a datagram dropped for r.
func (d *Device) drop(r DatagramDrop) { d.drops[r].Add(1) }

// spendHandshake takes a token of the device's budget for a handshake
// message, if one is left, and reports whether the device is under load:
// its budget is less than half left now, or was underLoadAfter ago or
// less.
func (d *Device) spendHandshake(now int64) (underLoad, token bool) {
	d.hsMu.Lock()
	defer d.hsMu.Unlock()
	underLoad = d.loadLocked(now)
	if d.hsBucket.tokens >= 1 {
		d.hsBucket.tokens--
		token = true
	}
	return underLoad || underLoadForTest.Load(), token
}

// underLoad reports whether the device is under load, spending nothing.
func (d *Device) underLoad(now int64) bool {
	d.hsMu.Lock()
	defer d.hsMu.Unlock()
	return d.loadLocked(now) || underLoadForTest.Load()
}

// loadLocked refills the budget, holds the device under load if less
// than half of it is left, and reports whether it is under load. d.hsMu
// is held.
func (d *Device) loadLocked(now int64) bool {
	rate := float64(d.hs.PerSecond)
	d.hsBucket.refill(now, rate, rate)
	if d.hsBucket.tokens < rate/2 {
		if now >= d.hsUntil {
			d.hsCount.underLoadEntered.Add(1)
		}
		d.hsUntil = max(d.hsUntil, now+int64(underLoadAfter))
	}
	return now < d.hsUntil
}

// underLoadForTest makes the device always under load.
var underLoadForTest atomic.Bool

// cookieOf writes the cookie of src now, MAC(secret, address and port),
// into m.cookie.
func (d *Device) cookieOf(m *macState, src netip.AddrPort, now int64) {
	j := &d.cookies
	j.mu.Lock()
	if !j.hasSecret || now-j.secretSet >= int64(cookieRefreshTime) {
		rand.Read(j.secret[:])
		j.secretSet, j.hasSecret = now, true
	}
	m.reset(j.secret[:])
	j.mu.Unlock()
	// As wireguard-go: the address's bytes (4 or 16), the port's (little
	// endian), in m.buf (on the heap: write lets it escape).
	b, _ := src.AppendBinary(m.buf[:0])
	m.write(b)
	m.h.Sum(m.cookie[:0])
}

// cookie returns the cookie of src now.
func (d *Device) cookie(src netip.AddrPort, now int64) [16]byte {
	m := getMAC()
	defer putMAC(m)
	d.cookieOf(m, src, now)
	return m.cookie
}

// checkMAC2 reports whether msg's mac2 is keyed by the cookie in m.cookie.
func (m *macState) checkMAC2(msg []byte) bool {
	n := len(msg)
	m.reset(m.cookie[:])
	m.write(msg[:n-16])
	m.final()
	return subtle.ConstantTimeCompare(m.sum[:], msg[n-16:]) == 1
}

// sendCookie answers msg (a handshake message from src) with a cookie
// reply carrying the cookie in m.cookie, built in m.buf.
func (d *Device) sendCookie(m *macState, msg []byte, src endpoint) {
	reply := m.buf[:sizeCookie]
	binary.LittleEndian.PutUint32(reply[0:4], typeCookie)
	copy(reply[4:8], msg[4:8]) // the sender index of msg
	rand.Read(reply[8:32])
	n := len(msg)
	d.cookieAEAD.Seal(reply[32:32], reply[8:32], m.cookie[:], msg[n-32:n-16])
	d.sendControl(nil, src, reply)
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
	l := &d.hs
	j := &d.cookies
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.limits == nil {
		j.limits = map[netip.Addr]bucket{}
	}
	if now-j.swept >= l.limitIdle() {
		j.sweep(now, l.limitIdle())
	}
	b, ok := j.limits[k]
	if !ok {
		if len(j.limits) >= l.MaxSources {
			d.hsCount.tableFull.Add(1)
			d.warnLimited(now, false, k)
			return false
		}
		b = bucket{tokens: float64(l.PerSourceBurst), last: now}
	}
	ok = b.take(now, float64(l.PerSourcePerSecond), float64(l.PerSourceBurst))
	j.limits[k] = b
	if !ok {
		d.hsCount.sourceLimited.Add(1)
		d.warnLimited(now, true, k)
	}
	return ok
}

// sweep forgets the sources idle for idle. j.mu is held.
func (j *cookieJar) sweep(now, idle int64) {
	for k, b := range j.limits {
		if now-b.last >= idle {
			delete(j.limits, k)
		}
	}
	j.swept = now
}

// warnLimited logs a refusal (for the source's limit, or for a full
// table), once per limitLogEvery, naming the limit by its edge.yml key.
// d.cookies.mu is held.
func (d *Device) warnLimited(now int64, sourceLimit bool, k netip.Addr) {
	j := &d.cookies
	if j.logged != 0 && now-j.logged < int64(limitLogEvery) {
		return
	}
	j.logged = now
	src := k.String()
	if k.Is6() {
		src = netip.PrefixFrom(k, 64).String()
	}
	l := &d.hs
	var why string
	if sourceLimit {
		why = fmt.Sprintf("l3.handshakes.per_source_per_second (%d/s, burst %d, per IPv4 address or IPv6 /64) reached under load for %s",
			l.PerSourcePerSecond, l.PerSourceBurst, src)
	} else {
		why = fmt.Sprintf("l3.handshakes.max_sources (%d) reached: new source %s refused until entries are idle for %v",
			l.MaxSources, src, time.Duration(l.limitIdle()))
	}
	d.log.Warn("l3 wireguard: handshake refused: "+why, "refused_source_limit", d.hsCount.sourceLimited.Load(),
		"refused_table_full", d.hsCount.tableFull.Load(), "next_line_in", limitLogEvery)
}

// admitHandshake decides whether to process a handshake message (mac1
// checked) from src: within the budget when not under load; under load
// only with a valid mac2 (else a cookie reply goes back) and within its
// source's limit (its IPv4 address or IPv6 /64).
func (d *Device) admitHandshake(msg []byte, src endpoint, now int64) bool {
	underLoad, token := d.spendHandshake(now)
	if !underLoad {
		if !token {
			d.hsCount.overBudget.Add(1)
			return false
		}
		d.hsCount.processed.Add(1)
		return true
	}
	m := getMAC()
	d.cookieOf(m, src.AddrPort, now)
	proven := m.checkMAC2(msg)
	if !proven {
		d.sendCookie(m, msg, src)
	}
	putMAC(m)
	if !proven || !d.allowAddr(src.Addr(), now) {
		return false
	}
	d.hsCount.proven.Add(1)
	return true
}
