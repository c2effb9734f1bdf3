package l3router

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func TestRouteLookup(t *testing.T) {
	r := newTestRouter(t, func(c *Config) {
		c.Peers = append(c.Peers,
			PeerConfig{Name: "conn-b", Kind: KindConnector, Routes: []netip.Prefix{
				netip.MustParsePrefix("198.19.32.0/20"), netip.MustParsePrefix("198.19.32.128/25"), // nested, same owner
				netip.MustParsePrefix("fd00:20::/48")}},
		)
	})
	for _, tc := range []struct {
		addr string
		want PeerID
	}{
		{"198.18.1.2", "alice"},
		{"198.18.1.3", "bob"},
		{"198.18.1.4", ""},
		{"198.19.10.0", "conn-a"},
		{"198.19.10.255", "conn-a"},
		{"198.19.11.0", ""},
		{"198.19.32.200", "conn-b"},
		{"198.19.47.255", "conn-b"},
		{"198.19.48.0", ""},
		{"fd00:1::2", "alice"},
		{"fd00:1::4", ""},
		{"fd00:10::ffff:1", "conn-a"},
		{"fd00:10:0:1::1", ""},
		{"fd00:20:0:ffff::1", "conn-b"},
		{"fd00:21::1", ""},
		{"::ffff:198.18.1.2", "alice"}, // Lookup unmaps
	} {
		got, ok := r.Lookup(netip.MustParseAddr(tc.addr))
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("Lookup(%s) = %q, %v; want %q", tc.addr, got, ok, tc.want)
		}
	}
}

func TestRouteErrors(t *testing.T) {
	r := newTestRouter(t, func(c *Config) {
		c.Peers = append(c.Peers, PeerConfig{Name: "conn-b", Kind: KindConnector})
	})
	for _, tc := range []struct {
		prefix string
		owner  PeerID
		want   error
	}{
		{"198.18.1.2/32", "conn-b", ErrOverlap},    // a client's address, even exactly (failover is between connectors)
		{"198.19.10.128/25", "conn-b", ErrOverlap}, // inside another connector's
		{"198.19.0.0/16", "conn-b", ErrOverlap},    // contains another connector's
		{"fd00:10::/80", "conn-b", ErrOverlap},
		{"198.18.1.0/24", "conn-b", ErrOverlap}, // contains clients
		{"198.19.10.9/32", "bob", ErrOverlap},   // client address inside a LAN
		{"198.18.9.0/24", "bob", ErrBadPrefix},  // client owns single addresses
		{"198.19.30.1/24", "conn-b", ErrBadPrefix},
		{"::ffff:198.19.30.0/120", "conn-b", ErrBadPrefix},
		{"198.19.30.0/24", "nobody", ErrUnknownPeer},
	} {
		err := r.AddRoute(netip.MustParsePrefix(tc.prefix), tc.owner)
		if !errors.Is(err, tc.want) {
			t.Errorf("AddRoute(%s, %s) = %v; want %v", tc.prefix, tc.owner, err, tc.want)
		} else {
			t.Logf("AddRoute(%s, %s): %v", tc.prefix, tc.owner, err)
		}
	}
	if err := r.AddRoute(netip.MustParsePrefix("198.19.30.0/24"), "conn-b"); err != nil {
		t.Fatal(err)
	}
	if err := r.AddRoute(netip.MustParsePrefix("198.19.30.0/24"), "conn-b"); err != nil {
		t.Fatalf("re-adding a route: %v", err)
	}
	if n := r.RemoveOwner("conn-a"); n != 2 {
		t.Fatalf("RemoveOwner removed %d, want 2", n)
	}
	if _, ok := r.Lookup(hostA4); ok {
		t.Fatal("route survived RemoveOwner")
	}
	// Now the subnet is free for conn-b.
	if err := r.AddRoute(lanA4, "conn-b"); err != nil {
		t.Fatal(err)
	}
	if got := r.AllowedIPs("conn-b"); len(got) != 2 || got[0] != lanA4 {
		t.Fatalf("AllowedIPs = %v", got)
	}
	// Config-time overlap is refused by New.
	cfg := testConfig()
	cfg.Peers = append(cfg.Peers, PeerConfig{Name: "conn-b", Kind: KindConnector, Routes: []netip.Prefix{netip.MustParsePrefix("198.19.10.0/23")}})
	if _, err := New(cfg); !errors.Is(err, ErrOverlap) {
		t.Fatalf("New with overlapping connectors: %v", err)
	} else {
		t.Logf("New: %v", err)
	}
}

// TestRouteLookupRandom compares the fib against a linear scan.
func TestRouteLookupRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var tbl routeTable
	seen := map[netip.Prefix]bool{}
	for i := range 300 {
		p := &peer{id: PeerID(rune('a' + i%26)), kind: KindConnector, idx: i}
		var pf netip.Prefix
		if i%2 == 0 {
			a := netip.AddrFrom4([4]byte{198, 18 + byte(rng.IntN(2)), byte(rng.IntN(256)), byte(rng.IntN(256))})
			pf, _ = a.Prefix(15 + rng.IntN(18))
		} else {
			var b [16]byte
			b[0] = 0xfd
			for j := 1; j < 16; j++ {
				b[j] = byte(rng.IntN(4))
			}
			pf, _ = netip.AddrFrom16(b).Prefix(8 + rng.IntN(121))
		}
		// Bypass add's overlap check: the fib itself must do longest
		// prefix match across owners.
		if !seen[pf.Masked()] {
			seen[pf.Masked()] = true
			tbl.routes = append(tbl.routes, route{pf.Masked(), p})
		}
	}
	f := tbl.compile()
	slow := func(a netip.Addr) *peer {
		var best *peer
		bits := -1
		for _, r := range tbl.routes {
			if r.prefix.Contains(a) && r.prefix.Bits() > bits {
				best, bits = r.owner, r.prefix.Bits()
			}
		}
		return best
	}
	for range 20000 {
		var a netip.Addr
		if rng.IntN(2) == 0 {
			a = netip.AddrFrom4([4]byte{198, 18 + byte(rng.IntN(2)), byte(rng.IntN(256)), byte(rng.IntN(256))})
		} else {
			var b [16]byte
			b[0] = 0xfd
			for j := 1; j < 16; j++ {
				b[j] = byte(rng.IntN(4))
			}
			a = netip.AddrFrom16(b)
		}
		if got, want := f.lookup(a), slow(a); got != want {
			t.Fatalf("lookup(%v) = %v, want %v", a, got, want)
		}
	}
	t.Logf("%d routes", len(tbl.routes))
}
