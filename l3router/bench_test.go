package l3router

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/onramp-net/onramp/dataplane/packet"
)

// BenchmarkRoute routes one IPv4 UDP packet from a client to a
// connector's subnet as the device does for each packet it decrypts:
// parse, checksum, source check, lookups, ACL, TTL.
func BenchmarkRoute(b *testing.B) {
	for _, size := range []int{64, 1420} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			r := newTestRouter(b, nil)
			attachAll(b, r)
			p := udpPacket(b, aliceV4, hostA4, 64, size)
			hdr := [4]byte(p[8:12]) // TTL, protocol, checksum
			var d Decision
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				copy(p[8:12], hdr[:])
				r.Route(p, PeerID("alice"), &d)
			}
			if d.Action != ActForward {
				b.Fatalf("action %v", d.Action)
			}
		})
	}
}

// benchFib returns a fib with n clients (a /32 and a /128 each) and 256
// connector subnets of mixed lengths.
func benchFib(b *testing.B, n int) (*fib, []netip.Addr) {
	var t routeTable
	var addrs []netip.Addr
	for i := range n {
		p := &peer{id: PeerID(fmt.Sprint("c", i)), kind: KindClient, idx: i}
		a4 := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		a6 := netip.AddrFrom16([16]byte{0xfd, 0, 1, 12: byte(i >> 8), 13: byte(i)})
		if err := t.add(host(a4), p); err != nil {
			b.Fatal(err)
		}
		if err := t.add(host(a6), p); err != nil {
			b.Fatal(err)
		}
		addrs = append(addrs, a4, a6)
	}
	for i := range 256 {
		p := &peer{id: PeerID(fmt.Sprint("s", i)), kind: KindConnector, idx: n + i}
		bits := 24 + i%5
		a4 := netip.AddrFrom4([4]byte{198, 19, byte(i), 0})
		a6 := netip.AddrFrom16([16]byte{0xfd, 0, 0x10, byte(i)})
		if err := t.add(netip.PrefixFrom(a4, bits).Masked(), p); err != nil {
			b.Fatal(err)
		}
		if err := t.add(netip.PrefixFrom(a6, 32+i%17).Masked(), p); err != nil {
			b.Fatal(err)
		}
		addrs = append(addrs, a4.Next(), a6.Next())
	}
	return t.compile(), addrs
}

func BenchmarkLookup(b *testing.B) {
	for _, n := range []int{16, 10000} {
		f, addrs := benchFib(b, n)
		for _, fam := range []string{"v4", "v6"} {
			b.Run(fmt.Sprintf("clients=%d/%s", n, fam), func(b *testing.B) {
				var as []netip.Addr
				for _, a := range addrs {
					if a.Is4() == (fam == "v4") {
						as = append(as, a)
					}
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if f.lookup(as[i%len(as)]) == nil {
						b.Fatal("no route")
					}
					i++
				}
			})
		}
	}
}

// BenchmarkACL evaluates a 20-rule policy for a packet that matches no
// rule and falls to the built-in default: the worst case.
func BenchmarkACL(b *testing.B) {
	var rules []RuleConfig
	for i := range 20 {
		rules = append(rules, RuleConfig{
			Action: "reject",
			From:   Selector{Groups: []string{"sales"}, Prefixes: []netip.Prefix{netip.MustParsePrefix(fmt.Sprintf("198.18.%d.0/24", 100+i))}},
			To:     Selector{Prefixes: []netip.Prefix{netip.MustParsePrefix(fmt.Sprintf("198.19.%d.0/24", 100+i))}},
			Proto:  "tcp",
			Ports:  []string{"22", "3389", "5900-5910"},
		})
	}
	r := newTestRouter(b, func(c *Config) { c.ACL.Rules = rules })
	st := r.state.Load()
	f := flow{src: aliceV4, dst: hostA4, srcP: st.fib.lookup(aliceV4), dstP: st.fib.lookup(hostA4),
		proto: packet.ProtoTCP, dstPort: 22, hasPorts: true}
	b.ReportAllocs()
	for b.Loop() {
		if st.acl.eval(&f) != ActionAllow {
			b.Fatal("denied")
		}
	}
}
