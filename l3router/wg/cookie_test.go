//go:build linux

package wg

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
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
	if a != DefaultHandshakesPerSourceBurst || b != a {
		t.Fatalf("processed %d from one address and %d from one /64, want the burst (%d) each", a, b, DefaultHandshakesPerSourceBurst)
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
	for range 2 * DefaultHandshakesPerSourceBurst {
		if !d.allowAddr(victim, now) {
			limited++
		}
	}
	if limited != DefaultHandshakesPerSourceBurst {
		t.Fatalf("%d of %d refused, want all but the burst", limited, 2*DefaultHandshakesPerSourceBurst)
	}
	// Fill the table with other sources (one message each).
	for i := range DefaultHandshakeSources + 100 {
		d.allowAddr(netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}), now)
	}
	if d.allowAddr(victim, now) {
		t.Fatal("a source that had spent its burst was let through again after the table filled up")
	}
	if n := d.HandshakeStats().Sources; n > DefaultHandshakeSources {
		t.Fatalf("%d sources in the table, want at most %d", n, DefaultHandshakeSources)
	}
	newcomer := netip.MustParseAddr("198.18.111.9")
	if d.allowAddr(newcomer, now) {
		t.Fatal("a new source was admitted with the table full")
	}
	if d.HandshakeStats().TableFull == 0 {
		t.Fatal("refusals for a full table not counted")
	}
	// Idle entries expire: after the idle time every source is new again.
	later := now + d.hs.limitIdle() + int64(time.Millisecond)
	if !d.allowAddr(newcomer, later) {
		t.Fatal("a new source is still refused once the table's entries went idle")
	}
	if n := d.HandshakeStats().Sources; n != 1 {
		t.Fatalf("%d sources in the table after the idle ones expired, want 1", n)
	}
}

// BenchmarkHandshakeLimit is the per-source limit of a handshake message
// under load: 4096 sources in turn (new entries, refills, refusals, the
// sweep of the idle ones: each source comes back after the idle time).
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

// floodMessage is an initiation from a source that never answers cookies:
// a valid mac1 and no mac2.
func floodMessage(d *Device) []byte {
	msg := make([]byte, sizeInitiation)
	binary.LittleEndian.PutUint32(msg, typeInitiation)
	rand.Read(msg[4 : len(msg)-32])
	addMACs(msg, d.id.mac1Key[:], nil)
	return msg
}

// TestUnderLoadHeld: a flood that never answers cookies keeps the device
// under load. Once its budget is half spent, the device processes none of
// the flood's messages (each would cost a Diffie-Hellman), however long
// the flood lasts, instead of processing them whenever the budget has
// refilled past half; and it stays under load for underLoadAfter after the
// flood, then leaves.
func TestUnderLoadHeld(t *testing.T) {
	const perSecond = 200
	d, err := New(Config{PrivateKey: newKey(t), Router: testRouter(t), Loops: 1, Logger: testLogger,
		Handshakes: HandshakeLimits{PerSecond: perSecond}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	src := sink(t) // the cookie replies go there
	msg := floodMessage(d)
	const (
		rate    = 2000 // messages a second, ten times the budget
		seconds = 5
	)
	start := d.now()
	now := start
	processed, lastProcessed := 0, start
	for i := range rate * seconds {
		now = start + int64(i)*int64(time.Second)/rate
		if d.admitHandshake(msg, endpoint{AddrPort: src}, now) {
			processed++
			lastProcessed = now
		}
	}
	s := d.HandshakeStats()
	t.Logf("a %d/s flood without cookies for %ds against a budget of %d/s: %d processed, the last %v in; %d cookie replies; under load %d times",
		rate, seconds, perSecond, processed, time.Duration(lastProcessed-start), s.Cookies, s.UnderLoadEntered)
	// Half the budget (and what it earns meanwhile) is processed, then
	// nothing.
	if processed > perSecond || lastProcessed-start > int64(time.Second) {
		t.Errorf("%d of the flood's messages processed, the last %v in: want at most a second's budget (%d), all in the first second",
			processed, time.Duration(lastProcessed-start), perSecond)
	}
	if s.UnderLoadEntered != 1 {
		t.Errorf("the device went under load %d times during one flood, want once", s.UnderLoadEntered)
	}
	if s.Cookies+uint64(processed) != rate*seconds {
		t.Errorf("%d cookie replies and %d processed for %d messages", s.Cookies, processed, rate*seconds)
	}
	// After the flood the budget refills past half within half a second;
	// the device stays under load until underLoadAfter after the flood's
	// last message.
	end := now
	if !d.underLoad(end + int64(underLoadAfter)*9/10) {
		t.Error("the device left under load less than a second after the flood")
	}
	if d.underLoad(end + int64(underLoadAfter)*11/10) {
		t.Error("the device is still under load more than a second after the flood")
	}
}

// TestUnderLoadAllocs: a handshake message under load, from the socket's
// bytes to the cookie reply sent (mac1 checked, the source's cookie, mac2
// checked, the reply sealed and sent), allocates nothing.
func TestUnderLoadAllocs(t *testing.T) {
	d := limitDevice(t)
	l := &loop{d: d}
	src := sink(t)
	msg := floodMessage(d)
	now := d.now()
	before := d.HandshakeStats().Cookies
	const runs = 200
	// Under the race detector sync.Pool drops a quarter of what is put
	// back, on purpose: the pooled MAC state is then allocated again.
	if n := testing.AllocsPerRun(runs, func() { l.handle(msg, src, now) }); n != 0 && !raceEnabled {
		t.Errorf("%v allocations per message under load, want 0", n)
	}
	if sent := d.HandshakeStats().Cookies - before; sent < runs {
		t.Fatalf("%d cookie replies sent for %d messages: the path measured is not the one under load", sent, runs)
	}
}

// BenchmarkUnderLoad is a handshake message under load answered with a
// cookie reply (mac1, cookie, mac2, the reply sealed and sent).
func BenchmarkUnderLoad(b *testing.B) {
	d := limitDevice(b)
	l := &loop{d: d}
	src := sink(b)
	msg := floodMessage(d)
	now := d.now()
	b.ReportAllocs()
	for b.Loop() {
		l.handle(msg, src, now)
	}
}

// TestHandshakeLimitsConfig: the limits of the Config apply, zero fields
// take the defaults, negative ones are refused.
func TestHandshakeLimitsConfig(t *testing.T) {
	underLoadForTest.Store(true)
	t.Cleanup(func() { underLoadForTest.Store(false) })
	d, err := New(Config{PrivateKey: newKey(t), Router: testRouter(t), Loops: 1, Logger: testLogger,
		Handshakes: HandshakeLimits{PerSourceBurst: 2, MaxSources: 3}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	want := HandshakeLimits{PerSecond: DefaultHandshakesPerSecond, PerSourcePerSecond: DefaultHandshakesPerSourcePerSecond,
		PerSourceBurst: 2, MaxSources: 3}
	if d.hs != want {
		t.Fatalf("limits %+v, want %+v", d.hs, want)
	}
	now := d.now()
	a := netip.MustParseAddr("198.18.110.2")
	n := 0
	for range 10 {
		if d.allowAddr(a, now) {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d of 10 messages at once let through, want the burst of 2", n)
	}
	for i := range 5 {
		d.allowAddr(netip.AddrFrom4([4]byte{198, 19, 0, byte(i)}), now)
	}
	if s := d.HandshakeStats(); s.Sources != 3 || s.TableFull != 3 {
		t.Errorf("%d sources tracked, %d refused for a full table: want 3 and 3", s.Sources, s.TableFull)
	}
	_, err = New(Config{PrivateKey: newKey(t), Router: testRouter(t), Loops: 1, Handshakes: HandshakeLimits{PerSourcePerSecond: -1}})
	if err == nil || !strings.Contains(err.Error(), "PerSourcePerSecond") {
		t.Fatalf("negative PerSourcePerSecond: %v, want an error naming it", err)
	}
}
