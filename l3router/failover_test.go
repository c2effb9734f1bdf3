package l3router

import (
	"errors"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

// failoverRouter has testConfig's peers and conn-b, conn-a's failover
// partner for lanA4 and lanA6 (added second: a standby), and conn-c with a
// LAN of its own.
func failoverRouter(t testing.TB) *Router {
	t.Helper()
	r := newTestRouter(t, func(c *Config) {
		c.Peers = append(c.Peers,
			PeerConfig{Name: "conn-b", Kind: KindConnector, Routes: []netip.Prefix{lanA4, lanA6}},
			PeerConfig{Name: "conn-c", Kind: KindConnector, Routes: []netip.Prefix{netip.MustParsePrefix("198.19.20.0/24")}},
		)
	})
	attachAll(t, r)
	return r
}

// routeFrom routes a copy of p from the peer attached as from and returns
// the decision.
func routeFrom(r *Router, p []byte, from PeerID) Decision {
	var d Decision
	r.Route(slices.Clone(p), from, &d)
	return d
}

func TestFailoverRoutes(t *testing.T) {
	r := failoverRouter(t)
	toLAN4 := udpPacket(t, aliceV4, hostA4, 64, 100)
	toLAN6 := udpPacket(t, aliceV6, hostA6, 64, 100)
	to := func(p []byte) any {
		t.Helper()
		d := routeFrom(r, p, "alice")
		if d.Action != ActForward {
			t.Fatalf("not forwarded: action %v", d.Action)
		}
		return d.To
	}
	// The first owner is active.
	if got := to(toLAN4); got != PeerID("conn-a") {
		t.Fatalf("to the shared LAN: %v, want conn-a", got)
	}
	want := []SharedPrefix{
		{Prefix: lanA4, Owners: []PeerID{"conn-a", "conn-b"}, Active: "conn-a"},
		{Prefix: lanA6, Owners: []PeerID{"conn-a", "conn-b"}, Active: "conn-a"},
	}
	if got := r.Shared(); !slices.EqualFunc(got, want, sharedEqual) {
		t.Fatalf("Shared = %+v, want %+v", got, want)
	}
	// Both owners may send from the LAN (the LAN picks its way back);
	// another connector may not.
	reply4 := udpPacket(t, hostA4, aliceV4, 64, 100)
	for _, from := range []PeerID{"conn-a", "conn-b"} {
		if d := routeFrom(r, reply4, from); d.Action != ActForward || d.To != PeerID("alice") {
			t.Fatalf("reply from %s: action %v to %v", from, d.Action, d.To)
		}
	}
	if d := routeFrom(r, reply4, "conn-c"); d.Action != ActDrop {
		t.Fatalf("conn-c sending from conn-a's LAN: action %v", d.Action)
	}
	st := r.Stats()
	if st.Peers["conn-b"].RxPackets != 1 || st.Unattributed[DropSpoofed] != 1 {
		t.Fatalf("conn-b rx %d, spoofed %d; want 1, 1", st.Peers["conn-b"].RxPackets, st.Unattributed[DropSpoofed])
	}

	// Per prefix: IPv4 to conn-b, IPv6 stays.
	if err := r.SetActive(lanA4, "conn-b"); err != nil {
		t.Fatal(err)
	}
	if got := to(toLAN4); got != PeerID("conn-b") {
		t.Fatalf("after SetActive: %v, want conn-b", got)
	}
	if got := to(toLAN6); got != PeerID("conn-a") {
		t.Fatalf("IPv6 after SetActive of IPv4: %v, want conn-a", got)
	}
	if p, _ := r.Lookup(hostA4); p != "conn-b" {
		t.Fatalf("Lookup = %v", p)
	}
	for _, tc := range []struct {
		prefix netip.Prefix
		owner  PeerID
		want   error
	}{
		{lanA4, "nobody", ErrUnknownPeer},
		{lanA4, "conn-c", ErrBadPrefix},
		{netip.MustParsePrefix("198.19.10.0/25"), "conn-a", ErrBadPrefix},
	} {
		if err := r.SetActive(tc.prefix, tc.owner); !errors.Is(err, tc.want) {
			t.Errorf("SetActive(%v, %v) = %v, want %v", tc.prefix, tc.owner, err, tc.want)
		}
	}
	if got := to(toLAN4); got != PeerID("conn-b") {
		t.Fatalf("after refused SetActive: %v, want conn-b", got)
	}

	// The active owner loses the prefix: the other takes over; back, it
	// is a standby.
	if n := r.RemoveOwner("conn-b"); n != 2 {
		t.Fatalf("RemoveOwner = %d", n)
	}
	if got := to(toLAN4); got != PeerID("conn-a") {
		t.Fatalf("active removed: %v, want conn-a", got)
	}
	if r.Shared() != nil {
		t.Fatalf("Shared with one owner each: %+v", r.Shared())
	}
	if err := r.AddRoute(lanA4, "conn-b"); err != nil {
		t.Fatal(err)
	}
	if got := to(toLAN4); got != PeerID("conn-a") {
		t.Fatalf("standby came back: %v, want conn-a still", got)
	}
	// A partial overlap with a shared prefix is still refused.
	if err := r.AddRoute(netip.MustParsePrefix("198.19.10.0/25"), "conn-c"); !errors.Is(err, ErrOverlap) {
		t.Fatalf("inside a shared prefix: %v", err)
	}

	// ReplacePeer keeps the active choice of a name that still owns the
	// prefix (its routes go to the end of the list).
	if err := r.SetActive(lanA4, "conn-b"); err != nil {
		t.Fatal(err)
	}
	if err := r.ReplacePeer(PeerConfig{Name: "conn-b", Kind: KindConnector, Routes: []netip.Prefix{lanA4}}); err != nil {
		t.Fatal(err)
	}
	attachAll(t, r)
	if got := to(toLAN4); got != PeerID("conn-b") {
		t.Fatalf("after ReplacePeer: %v, want conn-b", got)
	}
	// Forget of the active one hands over.
	if !r.Forget("conn-b") {
		t.Fatal("Forget")
	}
	if got := to(toLAN4); got != PeerID("conn-a") {
		t.Fatalf("after Forget: %v, want conn-a", got)
	}
}

func sharedEqual(a, b SharedPrefix) bool {
	return a.Prefix == b.Prefix && a.Active == b.Active && slices.Equal(a.Owners, b.Owners)
}

// TestFailoverFIB: with shared prefixes among many, the fib routes each
// prefix to its active owner and accepts sources from every owner, and
// nothing else changes.
func TestFailoverFIB(t *testing.T) {
	var tbl routeTable
	var owners []*peer
	for i := range 8 {
		p := &peer{id: PeerID(rune('a' + i)), kind: KindConnector, idx: i}
		p.att.Store(&attachment{v: p.id})
		owners = append(owners, p)
	}
	// 64 /24s; every third shared by three owners, every fifth by two.
	n := 0
	for i := range 64 {
		pf := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i), 0}), 24)
		k := 1
		if i%3 == 0 {
			k = 3
		} else if i%5 == 0 {
			k = 2
		}
		for j := range k {
			if err := tbl.add(pf, owners[(i+j)%len(owners)]); err != nil {
				t.Fatal(err)
			}
			n++
		}
		if k > 1 && i%2 == 0 {
			if tbl.active == nil {
				tbl.active = map[netip.Prefix]PeerID{}
			}
			tbl.active[pf] = owners[(i+k-1)%len(owners)].id // the last added
		}
	}
	f := tbl.compile()
	for i := range 64 {
		a := uint32(198)<<24 | 19<<16 | uint32(i)<<8 | 7
		k := 1
		if i%3 == 0 {
			k = 3
		} else if i%5 == 0 {
			k = 2
		}
		want := owners[i%len(owners)]
		if k > 1 && i%2 == 0 {
			want = owners[(i+k-1)%len(owners)]
		}
		if got := f.lookup4(a); got != want {
			t.Fatalf("prefix %d: lookup %v, want %v", i, got.id, want.id)
		}
		for j := range len(owners) {
			o := owners[(i+j)%len(owners)]
			// The data path asks for a standby sender when the
			// active owner is not the sender.
			got := f.lookup4(a)
			if got != o {
				got = f.standby4(a, o.id)
			}
			if (j < k) != (got == o) || j >= k && got != nil {
				t.Fatalf("prefix %d: source from %v (owner: %v): %v", i, o.id, j < k, got)
			}
		}
	}
	if f.lookup4(uint32(198)<<24|20<<16) != nil || f.standby4(uint32(198)<<24|20<<16, PeerID("a")) != nil {
		t.Fatal("source outside every prefix found")
	}
	t.Logf("%d routes, %d prefixes", n, 64)
}

// TestFailoverAllocs: routing to a shared prefix and from its standby
// owner allocates nothing.
func TestFailoverAllocs(t *testing.T) {
	r := failoverRouter(t)
	if err := r.SetActive(lanA6, "conn-b"); err != nil {
		t.Fatal(err)
	}
	var d Decision
	for _, c := range []struct {
		pkt  []byte
		from PeerID
	}{
		{udpPacket(t, aliceV4, hostA4, 64, 1420), "alice"},
		{udpPacket(t, aliceV6, hostA6, 64, 1420), "alice"},
		{udpPacket(t, hostA4, aliceV4, 64, 1420), "conn-b"}, // the standby
		{udpPacket(t, hostA6, aliceV6, 64, 1420), "conn-a"}, // the standby
		{udpPacket(t, hostA4, aliceV4, 64, 100), "conn-c"},  // no owner: spoofed
	} {
		orig := slices.Clone(c.pkt)
		if n := testing.AllocsPerRun(100, func() {
			copy(c.pkt, orig) // Route lowered the TTL
			r.Route(c.pkt, c.from, &d)
		}); n != 0 || (c.from != "conn-c") != (d.Action == ActForward) {
			t.Errorf("%v allocations per packet from %s (action %v), want 0", n, c.from, d.Action)
		}
	}
}

// TestFailoverConcurrent flips the active owner of a shared prefix while
// four goroutines route to it and from both owners: every packet to the
// LAN goes to an owner, every reply from either owner is forwarded.
func TestFailoverConcurrent(t *testing.T) {
	r := failoverRouter(t)
	stop := make(chan struct{})
	done := make(chan struct{})
	var flips atomic.Int64
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := r.SetActive(lanA4, []PeerID{"conn-a", "conn-b"}[i%2]); err != nil {
				t.Error(err)
				return
			}
			flips.Add(1)
		}
	}()
	var wg sync.WaitGroup
	var toA, toB atomic.Int64
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var d Decision
			for i := range 5000 {
				var p []byte
				var from PeerID
				if (i+w)%2 == 0 {
					p, from = udpPacket(t, aliceV4, hostA4, 64, 100), "alice"
				} else {
					p, from = udpPacket(t, hostA4, aliceV4, 64, 100), []PeerID{"conn-a", "conn-b"}[i%4/2]
				}
				r.Route(p, from, &d)
				if d.Action != ActForward {
					t.Errorf("packet from %s: action %v", from, d.Action)
					return
				}
				switch d.To {
				case PeerID("conn-a"):
					toA.Add(1)
				case PeerID("conn-b"):
					toB.Add(1)
				case PeerID("alice"):
				default:
					t.Errorf("packet from %s to %v", from, d.To)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-done
	t.Logf("%d flips; %d packets to conn-a, %d to conn-b", flips.Load(), toA.Load(), toB.Load())
}
