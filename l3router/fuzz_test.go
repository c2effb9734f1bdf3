package l3router

import (
	"bytes"
	"testing"

	"github.com/onramp-net/onramp/dataplane/packet"
)

// FuzzRouterWrite writes arbitrary bytes as a packet and checks that Write
// never panics, and that what the router queues is either an ICMP error from
// the router's address or the input, cut to its IP length, with the TTL or
// hop limit lowered by one — never a packet that does not parse.
func FuzzRouterWrite(f *testing.F) {
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
		f.Add(p, uint8(0))
		f.Add(withHeadroom(p, 16), uint8(16))
	}
	r := newTestRouter(f, func(c *Config) {
		c.MTU = 1280
		c.ACL.BuiltinDeny = "reject"
		c.ACL.Rules = []RuleConfig{{Action: "reject", Proto: "tcp", Ports: []string{"22"}}}
	})
	rb := make([][]byte, 4)
	for i := range rb {
		rb[i] = make([]byte, 70000)
	}
	sizes := make([]int, 4)
	f.Fuzz(func(t *testing.T, data []byte, off uint8) {
		offset := int(off % 32)
		in := bytes.Clone(data)
		if n, err := r.Write([][]byte{data}, offset); n != 1 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		n := r.ring.drain(rb, sizes, 0, &r.readShort)
		if r.ring.len() != 0 || n > 1 {
			t.Fatalf("%d packets out, %d left", n, r.ring.len())
		}
		if n == 0 {
			return
		}
		out := rb[0][:sizes[0]]
		k, err := packet.ParseFlowKey(out)
		if err != nil {
			t.Fatalf("queued a packet that does not parse: %v", err)
		}
		if src := k.SrcAddr(); src == routerV4 || src == routerV6 {
			icmpOf(t, out) // checks the checksums
			return
		}
		orig := in[offset:]
		if len(out) > len(orig) || len(out) > 1280 {
			t.Fatalf("forwarded %d bytes of a %d-byte input", len(out), len(orig))
		}
		switch out[0] >> 4 {
		case 4:
			ip, _ := packet.ParseIPv4(out)
			if !ip.ChecksumValid() {
				t.Fatal("forwarded a bad IPv4 header checksum")
			}
			if out[8] != orig[8]-1 || orig[8] <= 1 {
				t.Fatalf("TTL %d -> %d", orig[8], out[8])
			}
			if !bytes.Equal(out[:8], orig[:8]) || !bytes.Equal(out[12:], orig[12:len(out)]) {
				t.Fatal("forwarded packet changed beyond TTL and checksum")
			}
		case 6:
			if out[7] != orig[7]-1 || orig[7] <= 1 {
				t.Fatalf("hop limit %d -> %d", orig[7], out[7])
			}
			if !bytes.Equal(out[:7], orig[:7]) || !bytes.Equal(out[8:], orig[8:len(out)]) {
				t.Fatal("forwarded packet changed beyond the hop limit")
			}
		}
	})
}
