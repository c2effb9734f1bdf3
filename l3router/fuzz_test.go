package l3router

import (
	"bytes"
	"testing"

	"github.com/onramp-net/onramp/dataplane/packet"
)

// FuzzRoute routes arbitrary bytes, followed by padding, as a packet from
// alice or conn-a, and checks that Route never panics, and that what the
// device would send is either an ICMP error from the router's address
// to the sender or the input, cut to its IP length, with the TTL or hop
// limit lowered by one, to the peer that owns its destination — never a
// packet that does not parse, nor one whose source is not the sender's.
func FuzzRoute(f *testing.F) {
	for _, p := range [][]byte{
		udpPacket(f, aliceV4, hostA4, 64, 100),
		udpPacket(f, aliceV6, hostA6, 64, 100),
		udpPacket(f, hostA4, aliceV4, 1, 60),
		udpPacket(f, aliceV4, nowhere4, 64, 60),
		udpPacket(f, aliceV6, bobV6, 64, 60),
		tcpPacket(f, aliceV4, hostA4, 22),
		tcpPacket(f, aliceV6, hostA6, 443),
		{0x45, 0, 0, 20},
		{0x60},
	} {
		f.Add(p, uint8(0), false)
		f.Add(p, uint8(15), true)
	}
	r := newTestRouter(f, func(c *Config) {
		c.MTU = 1280
		c.ACL.BuiltinDeny = "reject"
		c.ACL.Rules = []RuleConfig{{Action: "reject", Proto: "tcp", Ports: []string{"22"}}}
	})
	attachAll(f, r)
	reply := make([]byte, 1280)
	f.Fuzz(func(t *testing.T, data []byte, pad uint8, fromConn bool) {
		from := PeerID("alice")
		if fromConn {
			from = "conn-a"
		}
		// The padding is part of the plaintext: a packet whose IP length
		// runs into it is forwarded with it, as by wireguard-go.
		b := make([]byte, len(data)+int(pad%16))
		copy(b, data)
		in := bytes.Clone(b)
		var d Decision
		r.Route(b, from, &d)
		switch d.Action {
		case ActDrop:
			return
		case ActReply:
			n := r.PutReply(reply, &d)
			if n == 0 {
				return // an ICMP error, a fragment or a multicast address: not answered
			}
			src, dst, _, _, _, _ := icmpOf(t, reply[:n]) // checks the checksums
			if src != routerV4 && src != routerV6 {
				t.Fatalf("ICMP error from %v, not the router", src)
			}
			if owner, _ := r.Lookup(dst); owner != from {
				t.Fatalf("ICMP error to %v (%q's), not to the sender %q", dst, owner, from)
			}
			return
		}
		out := b[:d.Len]
		if len(out) > len(in) || len(out) > 1280 {
			t.Fatalf("forwarded %d bytes of a %d-byte input", len(out), len(in))
		}
		k, err := packet.ParseFlowKey(out)
		if err != nil {
			t.Fatalf("forwarded a packet that does not parse: %v", err)
		}
		if owner, _ := r.Lookup(k.SrcAddr()); owner != from {
			t.Fatalf("forwarded a packet from %v (%q's) that %q sent", k.SrcAddr(), owner, from)
		}
		if owner, _ := r.Lookup(k.DstAddr()); d.To != owner {
			t.Fatalf("forwarded to %v, want %q, the owner of %v", d.To, owner, k.DstAddr())
		}
		switch out[0] >> 4 {
		case 4:
			ip, _ := packet.ParseIPv4(out)
			if !ip.ChecksumValid() {
				t.Fatal("forwarded a bad IPv4 header checksum")
			}
			if out[8] != in[8]-1 || in[8] <= 1 {
				t.Fatalf("TTL %d -> %d", in[8], out[8])
			}
			if !bytes.Equal(out[:8], in[:8]) || !bytes.Equal(out[12:], in[12:len(out)]) {
				t.Fatal("forwarded packet changed beyond TTL and checksum")
			}
		case 6:
			if out[7] != in[7]-1 || in[7] <= 1 {
				t.Fatalf("hop limit %d -> %d", in[7], out[7])
			}
			if !bytes.Equal(out[:7], in[:7]) || !bytes.Equal(out[8:], in[8:len(out)]) {
				t.Fatal("forwarded packet changed beyond the hop limit")
			}
		}
	})
}
