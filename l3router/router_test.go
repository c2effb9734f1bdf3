package l3router

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/onramp-net/onramp/dataplane/packet"
	"golang.zx2c4.com/wireguard/tun"
)

const wgOffset = 16 // wireguard-go's MessageTransportOffsetContent / MessageTransportHeaderSize

func TestForward(t *testing.T) {
	r := newTestRouter(t, nil)
	for _, tc := range []struct {
		name     string
		src, dst netip.Addr
	}{
		{"client to lan v4", aliceV4, hostA4},
		{"client to lan v6", aliceV6, hostA6},
		{"lan to client v4", hostA4, aliceV4},
		{"lan to client v6", hostA6, aliceV6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := udpPacket(t, tc.src, tc.dst, 64, 300)
			out := pass(t, r, wgOffset, in)
			if len(out) != 1 {
				t.Fatalf("got %d packets, want 1", len(out))
			}
			p := out[0]
			if len(p) != len(in) {
				t.Fatalf("len %d, want %d", len(p), len(in))
			}
			if tc.src.Is4() {
				ip, err := packet.ParseIPv4(p)
				if err != nil || !ip.ChecksumValid() {
					t.Fatalf("forwarded packet: %v, checksum valid %v", err, ip.ChecksumValid())
				}
				if ip.TTL() != 63 || ip.Src() != tc.src || ip.Dst() != tc.dst {
					t.Fatalf("ttl %d src %v dst %v", ip.TTL(), ip.Src(), ip.Dst())
				}
			} else {
				ip, err := packet.ParseIPv6(p)
				if err != nil || ip.HopLimit() != 63 || ip.Src() != tc.src {
					t.Fatalf("forwarded: %v hop limit %d src %v", err, ip.HopLimit(), ip.Src())
				}
			}
			// Only the TTL/hop limit and IPv4 header checksum changed.
			diff := 0
			for i := range p {
				if p[i] != in[i] {
					diff++
				}
			}
			if diff > 3 {
				t.Fatalf("%d bytes changed", diff)
			}
		})
	}
	s := r.Stats()
	if a := s.Peers["alice"]; a.RxPackets != 2 || a.TxPackets != 2 || a.RxBytes == 0 {
		t.Fatalf("alice stats %+v", a)
	}
	if c := s.Peers["conn-a"]; c.RxPackets != 2 || c.TxPackets != 2 {
		t.Fatalf("conn-a stats %+v", c)
	}
}

func TestNoRouteICMP(t *testing.T) {
	r := newTestRouter(t, nil)
	for _, tc := range []struct {
		src, dst   netip.Addr
		typ, code  uint8
		routerAddr netip.Addr
	}{
		{aliceV4, nowhere4, packet.ICMPv4DestUnreachable, packet.ICMPv4CodeNetUnreachable, routerV4},
		{aliceV6, nowhere6, packet.ICMPv6DestUnreachable, packet.ICMPv6CodeNoRoute, routerV6},
	} {
		in := udpPacket(t, tc.src, tc.dst, 64, 200)
		out := pass(t, r, wgOffset, in)
		if len(out) != 1 {
			t.Fatalf("%v: got %d packets, want the ICMP error", tc.dst, len(out))
		}
		src, dst, typ, code, _, quoted := icmpOf(t, out[0])
		if src != tc.routerAddr || dst != tc.src || typ != tc.typ || code != tc.code {
			t.Fatalf("icmp %v -> %v type %d code %d", src, dst, typ, code)
		}
		hl := 20
		if tc.src.Is6() {
			hl = 40
		}
		if !bytes.Equal(quoted[:hl+8], in[:hl+8]) {
			t.Fatalf("quoted header differs:\n%x\n%x", quoted[:hl+8], in[:hl+8])
		}
	}
	if d := r.Stats().Peers["alice"].Drops[DropNoRoute]; d != 2 {
		t.Fatalf("no_route drops %d, want 2", d)
	}
}

func TestTTLExceeded(t *testing.T) {
	r := newTestRouter(t, nil)
	for _, ttl := range []uint8{0, 1} {
		for _, c := range [][2]netip.Addr{{aliceV4, hostA4}, {aliceV6, hostA6}} {
			in := udpPacket(t, c[0], c[1], ttl, 100)
			out := pass(t, r, wgOffset, in)
			if len(out) != 1 {
				t.Fatalf("ttl %d: %d packets", ttl, len(out))
			}
			_, dst, typ, code, _, quoted := icmpOf(t, out[0])
			wantType := packet.ICMPv4TimeExceeded
			if c[0].Is6() {
				wantType = packet.ICMPv6TimeExceeded
			}
			if dst != c[0] || typ != wantType || code != 0 || !bytes.Equal(quoted, in) {
				t.Fatalf("ttl %d: dst %v type %d code %d", ttl, dst, typ, code)
			}
		}
	}
	if d := r.Stats().Peers["alice"].Drops[DropTTL]; d != 4 {
		t.Fatalf("ttl drops %d", d)
	}
}

func TestACLDefault(t *testing.T) {
	t.Run("drop", func(t *testing.T) {
		r := newTestRouter(t, nil)
		if out := pass(t, r, wgOffset, udpPacket(t, aliceV4, bobV4, 64, 100), udpPacket(t, aliceV6, bobV6, 64, 100)); len(out) != 0 {
			t.Fatalf("client to client forwarded: %d packets", len(out))
		}
		if d := r.Stats().Peers["alice"].Drops[DropACL]; d != 2 {
			t.Fatalf("acl drops %d", d)
		}
	})
	t.Run("reject", func(t *testing.T) {
		r := newTestRouter(t, func(c *Config) { c.ACL.BuiltinDeny = "reject" })
		out := pass(t, r, wgOffset, udpPacket(t, aliceV4, bobV4, 64, 100), udpPacket(t, aliceV6, bobV6, 64, 100))
		if len(out) != 2 {
			t.Fatalf("%d packets, want 2 ICMP errors", len(out))
		}
		_, dst, typ, code, _, _ := icmpOf(t, out[0])
		if dst != aliceV4 || typ != 3 || code != 13 {
			t.Fatalf("v4: dst %v type %d code %d", dst, typ, code)
		}
		_, dst, typ, code, _, _ = icmpOf(t, out[1])
		if dst != aliceV6 || typ != 1 || code != 1 {
			t.Fatalf("v6: dst %v type %d code %d", dst, typ, code)
		}
	})
	t.Run("connector to connector", func(t *testing.T) {
		r := newTestRouter(t, func(c *Config) {
			c.Peers = append(c.Peers, PeerConfig{Name: "conn-b", Kind: KindConnector, Routes: []netip.Prefix{netip.MustParsePrefix("198.19.20.0/24")}})
		})
		if out := pass(t, r, 0, udpPacket(t, hostA4, netip.MustParseAddr("198.19.20.1"), 64, 100)); len(out) != 0 {
			t.Fatal("site to site forwarded without a rule")
		}
	})
}

func TestACLAllowsClientToClient(t *testing.T) {
	r := newTestRouter(t, func(c *Config) {
		c.ACL.Rules = []RuleConfig{
			{Action: "allow", From: Selector{Peers: []PeerID{"alice"}}, To: Selector{Peers: []PeerID{"bob"}}},
			{Action: "allow", From: Selector{Peers: []PeerID{"bob"}}, To: Selector{Peers: []PeerID{"alice"}}},
		}
	})
	if out := pass(t, r, wgOffset, udpPacket(t, aliceV4, bobV4, 64, 100), udpPacket(t, bobV6, aliceV6, 64, 100)); len(out) != 2 {
		t.Fatalf("%d packets forwarded, want 2", len(out))
	}
}

func TestMalformed(t *testing.T) {
	r := newTestRouter(t, nil)
	good := udpPacket(t, aliceV4, hostA4, 64, 200)
	badSum := bytes.Clone(good)
	badSum[10] ^= 0xff
	badLen := bytes.Clone(good)
	badLen[2], badLen[3] = 0xff, 0xff // total length past the buffer
	shortIHL := bytes.Clone(good)
	shortIHL[0] = 0x44
	garbageAfterHeader := bytes.Clone(good[:28])
	garbageAfterHeader[0] = 0x46 // IHL 24 bytes: options run into the UDP header
	truncUDP := udpPacket(t, aliceV4, hostA4, 64, 28)[:24]
	truncUDP[2], truncUDP[3] = 0, 24
	v6trunc := udpPacket(t, aliceV6, hostA6, 64, 200)[:60]
	version := bytes.Clone(good)
	version[0] = 0x55
	bad := [][]byte{{}, {0x45}, badSum, badLen, shortIHL, garbageAfterHeader, truncUDP, v6trunc, version, good[:19]}
	pkts := append([][]byte{good}, bad...)
	pkts = append(pkts, good)
	out := pass(t, r, wgOffset, pkts...)
	if len(out) != 2 {
		t.Fatalf("%d packets forwarded, want the 2 good ones", len(out))
	}
	s := r.Stats()
	if got := s.Unattributed[DropMalformed]; got != uint64(len(bad)) {
		t.Fatalf("malformed %d, want %d", got, len(bad))
	}
}

func TestSpoofedSource(t *testing.T) {
	r := newTestRouter(t, nil)
	if out := pass(t, r, 0, udpPacket(t, netip.MustParseAddr("198.18.200.1"), hostA4, 64, 100)); len(out) != 0 {
		t.Fatal("forwarded a packet from an unowned source")
	}
	if r.Stats().Unattributed[DropSpoofed] != 1 {
		t.Fatal("not counted as spoofed")
	}
}

func TestTooBig(t *testing.T) {
	r := newTestRouter(t, func(c *Config) { c.MTU = 1280 })
	out := pass(t, r, 0, udpPacket(t, aliceV4, hostA4, 64, 1400), udpPacket(t, aliceV6, hostA6, 64, 1400), udpPacket(t, aliceV4, hostA4, 64, 1280))
	if len(out) != 3 {
		t.Fatalf("%d packets", len(out))
	}
	_, _, typ, code, rest, _ := icmpOf(t, out[0])
	if typ != 3 || code != 4 || rest != 1280 {
		t.Fatalf("v4 frag needed: type %d code %d rest %d", typ, code, rest)
	}
	_, _, typ, _, rest, _ = icmpOf(t, out[1])
	if typ != packet.ICMPv6PacketTooBig || rest != 1280 {
		t.Fatalf("v6 too big: type %d rest %d", typ, rest)
	}
	if len(out[2]) != 1280 {
		t.Fatalf("MTU-sized packet not forwarded")
	}
}

func TestQueueFull(t *testing.T) {
	r := newTestRouter(t, func(c *Config) { c.QueueLen = 8 })
	write := func(src netip.Addr, count int) {
		t.Helper()
		p := udpPacket(t, src, hostA4, 64, 100)
		bufs := make([][]byte, count)
		for i := range bufs {
			bufs[i] = bytes.Clone(p)
		}
		if n, err := r.Write(bufs, 0); n != count || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	// One sender holds at most half the queue.
	write(aliceV4, 20)
	if d := r.Stats().Peers["alice"].Drops[DropQueueFull]; d != 16 {
		t.Fatalf("alice queue_full %d, want 16 (she may hold 4 of 8 slots)", d)
	}
	// Another sender still finds room: the other half.
	write(bobV4, 20)
	if d := r.Stats().Peers["bob"].Drops[DropQueueFull]; d != 16 {
		t.Fatalf("bob queue_full %d, want 16", d)
	}
	// Now the queue is full: nobody gets in.
	write(aliceV4, 1)
	if d := r.Stats().Peers["alice"].Drops[DropQueueFull]; d != 17 {
		t.Fatalf("alice queue_full %d, want 17", d)
	}
	rb := make([][]byte, BatchSize)
	for i := range rb {
		rb[i] = make([]byte, 2000)
	}
	sizes := make([]int, BatchSize)
	if n, err := r.Read(rb, sizes, 4); n != 8 || err != nil {
		t.Fatalf("Read = %d, %v", n, err)
	}
	// Room again, and the shares were given back: alice gets 4 again.
	write(aliceV4, 5)
	if d := r.Stats().Peers["alice"].Drops[DropQueueFull]; d != 18 {
		t.Fatalf("alice queue_full %d after the queue drained, want 18", d)
	}
	if n, err := r.Read(rb, sizes, 4); n != 4 || err != nil {
		t.Fatalf("Read = %d, %v", n, err)
	}
}

// TestQueueShareUnderFlood: while one peer floods without pause, another
// peer's occasional packets all get through.
func TestQueueShareUnderFlood(t *testing.T) {
	r := newTestRouter(t, func(c *Config) { c.QueueLen = 64 })
	flood := udpPacket(t, aliceV4, hostA4, 64, 1000)
	bufs := make([][]byte, BatchSize)
	for i := range bufs {
		bufs[i] = bytes.Clone(flood)
	}
	rb := make([][]byte, BatchSize)
	for i := range rb {
		rb[i] = make([]byte, 2000)
	}
	sizes := make([]int, BatchSize)
	light := udpPacket(t, bobV4, hostA4, 64, 100)
	for round := range 100 {
		// The flooder writes more than the whole queue each round...
		for range 4 {
			if _, err := r.Write(bufs, 0); err != nil {
				t.Fatal(err)
			}
		}
		// ...yet the light peer's packet is accepted...
		if _, err := r.Write([][]byte{bytes.Clone(light)}, 0); err != nil {
			t.Fatal(err)
		}
		// ...and the reader, slower than the flood, drains a batch.
		if _, err := r.Read(rb, sizes, 0); err != nil {
			t.Fatal(err)
		}
		if d := r.Stats().Peers["bob"].Drops[DropQueueFull]; d != 0 {
			t.Fatalf("round %d: bob lost %d packets to alice's flood", round, d)
		}
	}
	if r.Stats().Peers["alice"].Drops[DropQueueFull] == 0 {
		t.Fatal("the flood never filled alice's share: the test proves nothing")
	}
}

func TestReadBlocksAndClose(t *testing.T) {
	r := newTestRouter(t, nil)
	if ev := <-r.Events(); ev != tun.EventUp {
		t.Fatalf("event %v", ev)
	}
	rb := [][]byte{make([]byte, 2000), make([]byte, 2000)}
	sizes := make([]int, 2)
	got := make(chan error, 1)
	go func() {
		n, err := r.Read(rb, sizes, wgOffset)
		if err == nil && n != 1 {
			err = errors.New("wrong count")
		}
		got <- err
	}()
	time.Sleep(20 * time.Millisecond)
	p := udpPacket(t, aliceV4, hostA4, 64, 100)
	if _, err := r.Write([][]byte{withHeadroom(p, wgOffset)}, wgOffset); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if sizes[0] != len(p) || rb[0][wgOffset+8] != 63 {
		t.Fatalf("size %d ttl %d", sizes[0], rb[0][wgOffset+8])
	}
	go func() {
		_, err := r.Read(rb, sizes, 0)
		got <- err
	}()
	time.Sleep(20 * time.Millisecond)
	r.Close()
	r.Close()
	if err := <-got; !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	if _, err := r.Write([][]byte{p}, 0); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
	if _, ok := <-r.Events(); ok {
		t.Fatal("events channel not closed")
	}
}

func TestICMPRateLimit(t *testing.T) {
	r := newTestRouter(t, func(c *Config) { c.ICMPRate = 3 })
	var pkts [][]byte
	for range 10 {
		pkts = append(pkts, udpPacket(t, aliceV4, nowhere4, 64, 60))
	}
	if out := pass(t, r, 0, pkts...); len(out) != 3 {
		t.Fatalf("%d ICMP errors, want 3 (the burst)", len(out))
	}
	if s := r.Stats(); s.ICMPRateLimited != 7 || s.ICMPErrors != 3 {
		t.Fatalf("limited %d sent %d", s.ICMPRateLimited, s.ICMPErrors)
	}
}

func TestNoICMPAboutICMPErrors(t *testing.T) {
	r := newTestRouter(t, nil)
	// An ICMP error from alice to nowhere is dropped without a reply.
	icmpErr := pass(t, r, 0, udpPacket(t, aliceV4, nowhere4, 64, 60))[0]
	// Swap: pretend alice sends that error towards nowhere.
	ip, _ := packet.ParseIPv4(icmpErr)
	ip.SetSrc(aliceV4)
	ip.SetDst(nowhere4)
	if out := pass(t, r, 0, icmpErr); len(out) != 0 {
		t.Fatal("answered an ICMP error with an ICMP error")
	}
}

func TestZeroAllocWriteRead(t *testing.T) {
	r := newTestRouter(t, nil)
	bufs, pkts := batch(t, 64, 1420)
	rb := make([][]byte, BatchSize)
	for i := range rb {
		rb[i] = make([]byte, wgOffset+1500)
	}
	sizes := make([]int, BatchSize)
	allocs := testing.AllocsPerRun(100, func() {
		resetTTL(bufs, pkts)
		r.Write(bufs, wgOffset)
		r.Read(rb, sizes, wgOffset)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per Write+Read batch, want 0", allocs)
	}
	// The error paths too.
	nr := [][]byte{withHeadroom(udpPacket(t, aliceV4, nowhere4, 64, 100), wgOffset), withHeadroom(udpPacket(t, aliceV6, bobV6, 64, 100), wgOffset), {1, 2, 3}}
	allocs = testing.AllocsPerRun(100, func() {
		r.Write(nr, wgOffset)
		r.ring.drain(rb, sizes, wgOffset, &r.readShort)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per error batch, want 0", allocs)
	}
}

// batch returns n copies of an IPv4 UDP packet of size bytes from alice to
// hostA4 with wgOffset headroom, and the original.
func batch(t testing.TB, n, size int) (bufs [][]byte, orig []byte) {
	orig = udpPacket(t, aliceV4, hostA4, 64, size)
	bufs = make([][]byte, n)
	for i := range bufs {
		bufs[i] = withHeadroom(orig, wgOffset)
	}
	return bufs, orig
}

// resetTTL undoes the router's TTL decrement in bufs.
func resetTTL(bufs [][]byte, orig []byte) {
	for _, b := range bufs {
		copy(b[wgOffset+8:wgOffset+12], orig[8:12]) // TTL, protocol, checksum
	}
}
