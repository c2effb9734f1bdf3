//go:build linux

package wg

import (
	"crypto/rand"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// limitDevice is a device without peers, always under load: every
// handshake message needs a valid mac2 and passes the per-source limit.
func limitDevice(tb testing.TB) *Device {
	underLoadForTest.Store(true)
	tb.Cleanup(func() { underLoadForTest.Store(false) }) // runs after the device's cleanup
	d, err := New(Config{PrivateKey: newKey(tb), Router: testRouter(tb), Loops: 1, Logger: testLogger})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	return d
}

// proven returns an initiation-shaped message from src carrying the mac2
// of src's cookie: what a source that got a cookie reply sends next.
func proven(d *Device, src netip.AddrPort, now int64) []byte {
	msg := make([]byte, sizeInitiation)
	msg[0] = typeInitiation
	rand.Read(msg[4 : len(msg)-16])
	c := d.cookie(src, now)
	mac(msg[len(msg)-16:], c[:], msg[:len(msg)-16])
	return msg
}

// admitted counts the messages admitHandshake lets through, one from each
// source at now.
func admitted(d *Device, srcs []netip.AddrPort, now int64) int {
	n := 0
	for _, s := range srcs {
		if d.admitHandshake(proven(d, s, now), endpoint{AddrPort: s}, now) {
			n++
		}
	}
	return n
}

// in64 returns n sources with random interface identifiers in prefix.
func in64(prefix string, n int) []netip.AddrPort {
	p := netip.MustParsePrefix(prefix)
	out := make([]netip.AddrPort, n)
	for i := range out {
		b := p.Addr().As16()
		rand.Read(b[8:])
		out[i] = netip.AddrPortFrom(netip.AddrFrom16(b), uint16(1024+i))
	}
	return out
}

// TestHandshakeLimitPer64: under load, an attacker holding a /64 gets no
// more handshake messages processed by cycling its source addresses than
// one address gets; other /64s and IPv4 addresses have limits of their
// own.
func TestHandshakeLimitPer64(t *testing.T) {
	d := limitDevice(t)
	now := d.now()
	one := in64("fd00:119::/64", 1)
	for range 100 {
		one = append(one, one[0])
	}
	cycling := in64("fd00:118::/64", 101)
	a, b := admitted(d, one, now), admitted(d, cycling, now)
	t.Logf("101 messages at once: %d processed from one address, %d from 101 addresses of a /64", a, b)
	if a != perAddrBurst || b != a {
		t.Fatalf("processed %d from one address and %d from one /64, want the burst (%d) each", a, b, perAddrBurst)
	}
	// A second later the /64 has earned what one address earns.
	later := now + int64(time.Second)
	a2, b2 := admitted(d, one, later), admitted(d, in64("fd00:118::/64", 101), later)
	if a2 != b2 {
		t.Fatalf("one second later: %d processed from one address, %d from the /64, want the same", a2, b2)
	}
	// Others are not held back by the attacker's /64.
	other := in64("fd00:117::/64", 1)
	v4 := []netip.AddrPort{netip.MustParseAddrPort("198.18.110.2:51820"), netip.MustParseAddrPort("198.18.110.3:51820")}
	if admitted(d, other, later) != 1 || admitted(d, v4, later) != 2 {
		t.Fatal("another /64 or an IPv4 address was refused: the limit is per /64 and per IPv4 address")
	}
	// An IPv4-mapped source is its IPv4 address.
	mapped := netip.AddrPortFrom(netip.AddrFrom16(netip.MustParseAddr("198.18.110.2").As16()), 51820)
	if k := limitKey(mapped.Addr()); k != netip.MustParseAddr("198.18.110.2") {
		t.Fatalf("limit key of %v is %v", mapped, k)
	}
	if s, n := d.HandshakeStats(), uint64(a+b+a2+b2+3); s.Proven != n || s.SourceLimited == 0 || s.Processed != 0 {
		t.Fatalf("stats %+v: want the %d messages let through counted as proven, and the source-limited ones", s, n)
	}
}

// TestHandshakeLimitTable: the table of per-source limits is capped. Full,
// it refuses new sources and keeps the old ones' state (wiping it would
// give every attacker a fresh burst); idle entries expire.
func TestHandshakeLimitTable(t *testing.T) {
	d := limitDevice(t)
	now := d.now()
	victim := netip.MustParseAddr("198.18.110.2")
	limited := 0
	for range 2 * perAddrBurst {
		if !d.allowAddr(victim, now) {
			limited++
		}
	}
	if limited != perAddrBurst {
		t.Fatalf("%d of %d refused, want all but the burst", limited, 2*perAddrBurst)
	}
	// Fill the table with other sources (one message each).
	for i := range maxAddrLimits + 100 {
		d.allowAddr(netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}), now)
	}
	if d.allowAddr(victim, now) {
		t.Fatal("a source that had spent its burst was let through again after the table filled up")
	}
	if n := d.HandshakeStats().Sources; n > maxAddrLimits {
		t.Fatalf("%d sources in the table, want at most %d", n, maxAddrLimits)
	}
	newcomer := netip.MustParseAddr("198.18.111.9")
	if d.allowAddr(newcomer, now) {
		t.Fatal("a new source was admitted with the table full")
	}
	if d.HandshakeStats().TableFull == 0 {
		t.Fatal("refusals for a full table not counted")
	}
	// Idle entries expire: after limitIdle every source is new again.
	later := now + int64(limitIdle) + int64(time.Millisecond)
	if !d.allowAddr(newcomer, later) {
		t.Fatal("a new source is still refused once the table's entries went idle")
	}
	if n := d.HandshakeStats().Sources; n != 1 {
		t.Fatalf("%d sources in the table after the idle ones expired, want 1", n)
	}
}

// BenchmarkHandshakeLimit is the per-source limit of a handshake message
// under load: 4096 sources in turn (new entries, refills, refusals, the
// sweep of the idle ones: each source comes back after limitIdle).
func BenchmarkHandshakeLimit(b *testing.B) {
	d := limitDevice(b)
	srcs := make([]netip.Addr, 4096)
	for i := range srcs {
		srcs[i] = netip.MustParseAddr(fmt.Sprintf("fd00:%x::%x", i, i+1))
	}
	now := d.now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		now += int64(300 * time.Microsecond) // a round of the sources takes longer than limitIdle
		d.allowAddr(srcs[i%len(srcs)], now)
	}
}
