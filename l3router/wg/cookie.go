//go:build linux

package wg

import (
	"crypto/rand"
	"crypto/subtle"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/chacha20poly1305"
)

// Under load (more handshake messages than half the device's budget in
// the last second), the device answers a handshake message that carries no
// valid mac2 with a cookie reply instead of processing it, as the protocol
// prescribes: the peer's next attempt proves its address with the cookie,
// and proven addresses are then limited one by one (perAddrPerSecond), so
// that a flood from spoofed or few addresses cannot take every peer's
// handshakes down with it.

const (
	perAddrPerSecond = 20
	perAddrBurst     = 5
	maxAddrLimits    = 1 << 14 // the table is cleared when it grows past this
)

type cookieJar struct {
	mu        sync.Mutex
	secret    [32]byte
	secretSet int64 // device clock; rotated every cookieRefreshTime
	hasSecret bool
	limits    map[netip.Addr]*bucket
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
	d.cookiesSent.Add(1)
}

// allowAddr is the per-address limit of handshakes under load.
func (d *Device) allowAddr(a netip.Addr, now int64) bool {
	j := &d.cookies
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.limits == nil || len(j.limits) > maxAddrLimits {
		j.limits = map[netip.Addr]*bucket{}
	}
	l := j.limits[a]
	if l == nil {
		l = &bucket{tokens: perAddrBurst, last: now}
		j.limits[a] = l
	}
	return l.take(now, perAddrPerSecond, perAddrBurst)
}

// admitHandshake decides whether to process a handshake message (mac1
// checked) from src: within the budget when not under load; under load
// only with a valid mac2 (else a cookie reply goes back) and within its
// address's limit.
func (d *Device) admitHandshake(msg []byte, src netip.AddrPort, now int64) bool {
	if !d.underLoad(now) {
		return d.allowHandshake(now)
	}
	if !d.checkMAC2(msg, src, now) {
		d.sendCookie(msg, src, now)
		return false
	}
	d.allowHandshake(now) // spend budget, so that the load is seen
	return d.allowAddr(src.Addr(), now)
}
