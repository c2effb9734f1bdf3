package l3router

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"github.com/onramp-net/onramp/dataplane/packet"
)

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
			out := pass(t, r, in)
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
		out := pass(t, r, in)
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
			out := pass(t, r, in)
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
		if out := pass(t, r, udpPacket(t, aliceV4, bobV4, 64, 100), udpPacket(t, aliceV6, bobV6, 64, 100)); len(out) != 0 {
			t.Fatalf("client to client forwarded: %d packets", len(out))
		}
		if d := r.Stats().Peers["alice"].Drops[DropACL]; d != 2 {
			t.Fatalf("acl drops %d", d)
		}
	})
	t.Run("reject", func(t *testing.T) {
		r := newTestRouter(t, func(c *Config) { c.ACL.BuiltinDeny = "reject" })
		out := pass(t, r, udpPacket(t, aliceV4, bobV4, 64, 100), udpPacket(t, aliceV6, bobV6, 64, 100))
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
		if out := pass(t, r, udpPacket(t, hostA4, netip.MustParseAddr("198.19.20.1"), 64, 100)); len(out) != 0 {
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
	if out := pass(t, r, udpPacket(t, aliceV4, bobV4, 64, 100), udpPacket(t, bobV6, aliceV6, 64, 100)); len(out) != 2 {
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
	out := pass(t, r, pkts...)
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
	if out := pass(t, r, udpPacket(t, netip.MustParseAddr("198.18.200.1"), hostA4, 64, 100)); len(out) != 0 {
		t.Fatal("forwarded a packet from an unowned source")
	}
	if r.Stats().Unattributed[DropSpoofed] != 1 {
		t.Fatal("not counted as spoofed")
	}
}

func TestTooBig(t *testing.T) {
	r := newTestRouter(t, func(c *Config) { c.MTU = 1280 })
	out := pass(t, r, udpPacket(t, aliceV4, hostA4, 64, 1400), udpPacket(t, aliceV6, hostA6, 64, 1400), udpPacket(t, aliceV4, hostA4, 64, 1280))
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

func TestICMPRateLimit(t *testing.T) {
	r := newTestRouter(t, func(c *Config) { c.ICMPRate = 3 })
	var pkts [][]byte
	for range 10 {
		pkts = append(pkts, udpPacket(t, aliceV4, nowhere4, 64, 60))
	}
	if out := pass(t, r, pkts...); len(out) != 3 {
		t.Fatalf("%d ICMP errors, want 3 (the burst)", len(out))
	}
	if s := r.Stats(); s.ICMPRateLimited != 7 || s.ICMPErrors != 3 {
		t.Fatalf("limited %d sent %d", s.ICMPRateLimited, s.ICMPErrors)
	}
}

func TestNoICMPAboutICMPErrors(t *testing.T) {
	r := newTestRouter(t, nil)
	// An ICMP error from alice to nowhere is dropped without a reply.
	icmpErr := pass(t, r, udpPacket(t, aliceV4, nowhere4, 64, 60))[0]
	// Swap: pretend alice sends that error towards nowhere.
	ip, _ := packet.ParseIPv4(icmpErr)
	ip.SetSrc(aliceV4)
	ip.SetDst(nowhere4)
	if out := pass(t, r, icmpErr); len(out) != 0 {
		t.Fatal("answered an ICMP error with an ICMP error")
	}
}

// TestRouteSender: a packet whose source is another peer's is not the
// sender's to send: dropped as spoofed, whatever its destination, and not
// charged to the peer it claims to be from.
func TestRouteSender(t *testing.T) {
	r := newTestRouter(t, nil)
	attachAll(t, r)
	var d Decision
	for _, p := range [][]byte{udpPacket(t, aliceV4, hostA4, 64, 100), udpPacket(t, aliceV6, nowhere6, 64, 100), udpPacket(t, hostA4, aliceV4, 64, 100)} {
		r.Route(p, PeerID("bob"), &d)
		if d.Action != ActDrop {
			t.Fatalf("%x from bob: action %v, want a drop", p[:20], d.Action)
		}
	}
	// No sender at all: a peer the device has not attached.
	r.Route(udpPacket(t, bobV4, hostA4, 64, 100), nil, &d)
	s := r.Stats()
	if got := s.Unattributed[DropSpoofed]; got != 4 {
		t.Errorf("spoofed drops %d, want 4", got)
	}
	if a := s.Peers["alice"]; a.RxPackets != 0 || a.Drops != ([NumDropReasons]uint64{}) {
		t.Errorf("alice charged for packets bob sent: %+v", a)
	}
	if s.ICMPErrors != 0 {
		t.Errorf("%d ICMP errors for spoofed packets", s.ICMPErrors)
	}
}

// TestRouteDestination: a destination peer the device has not attached
// (yet) is no route; attached, it gets the packet, named by what was
// attached.
func TestRouteDestination(t *testing.T) {
	r := newTestRouter(t, nil)
	if err := r.Attach("alice", "alice's handle"); err != nil {
		t.Fatal(err)
	}
	var d Decision
	r.Route(udpPacket(t, aliceV4, hostA4, 64, 100), "alice's handle", &d)
	if d.Action != ActDrop || r.Stats().Peers["alice"].Drops[DropNoRoute] != 1 {
		t.Fatalf("to a peer not attached: action %v, stats %+v", d.Action, r.Stats().Peers["alice"])
	}
	if err := r.Attach("conn-a", 42); err != nil {
		t.Fatal(err)
	}
	r.Route(udpPacket(t, aliceV4, hostA4, 64, 100), "alice's handle", &d)
	if d.Action != ActForward || d.To != 42 {
		t.Fatalf("action %v to %v, want forward to 42", d.Action, d.To)
	}
	if err := r.Attach("nobody", 1); !errors.Is(err, ErrUnknownPeer) {
		t.Errorf("Attach of an unknown peer: %v", err)
	}
}

// TestRoutePadding: the device hands Route a decrypted packet with its
// WireGuard padding; Len is the packet's own length, and the padding is
// neither forwarded nor quoted in an ICMP error.
func TestRoutePadding(t *testing.T) {
	r := newTestRouter(t, nil)
	attachAll(t, r)
	for _, c := range [][2]netip.Addr{{aliceV4, hostA4}, {aliceV6, hostA6}} {
		in := udpPacket(t, c[0], c[1], 64, 101)
		b := append(bytes.Clone(in), make([]byte, 11)...)
		var d Decision
		r.Route(b, PeerID("alice"), &d)
		if d.Action != ActForward || d.Len != len(in) {
			t.Fatalf("%v: action %v len %d, want forward of %d bytes", c[1], d.Action, d.Len, len(in))
		}
	}
	in := udpPacket(t, aliceV4, nowhere4, 64, 101)
	var d Decision
	r.Route(append(bytes.Clone(in), make([]byte, 11)...), PeerID("alice"), &d)
	reply := make([]byte, 1500)
	n := r.PutReply(reply, &d)
	if d.Action != ActReply || n == 0 {
		t.Fatalf("action %v, reply of %d bytes", d.Action, n)
	}
	if _, _, _, _, _, quoted := icmpOf(t, reply[:n]); !bytes.Equal(quoted, in) {
		t.Fatalf("quoted %d bytes, want the %d of the packet without its padding", len(quoted), len(in))
	}
	if r.PutReply(reply[:20], &d) != 0 {
		t.Error("PutReply wrote into a buffer too small")
	}
}

// TestRouteAllocs: Route allocates nothing, forwarding or not, and
// neither does PutReply.
func TestRouteAllocs(t *testing.T) {
	r := newTestRouter(t, nil)
	attachAll(t, r)
	fwd := udpPacket(t, aliceV4, hostA4, 64, 1420)
	hdr := [4]byte(fwd[8:12]) // TTL, protocol, checksum
	var d Decision
	if n := testing.AllocsPerRun(100, func() {
		copy(fwd[8:12], hdr[:]) // Route decremented the TTL
		r.Route(fwd, PeerID("alice"), &d)
	}); n != 0 || d.Action != ActForward {
		t.Errorf("%v allocations per packet forwarded (action %v), want 0", n, d.Action)
	}
	reply := make([]byte, 1500)
	for _, p := range [][]byte{
		udpPacket(t, aliceV4, nowhere4, 64, 100), // ICMP error
		udpPacket(t, aliceV6, bobV6, 64, 100),    // ACL drop
		udpPacket(t, bobV4, hostA4, 64, 100),     // spoofed (from alice)
		{1, 2, 3},                                // malformed
	} {
		if n := testing.AllocsPerRun(100, func() {
			r.Route(p, PeerID("alice"), &d)
			r.PutReply(reply, &d)
		}); n != 0 {
			t.Errorf("%v allocations for %x (action %v), want 0", n, p[:min(len(p), 20)], d.Action)
		}
	}
}
