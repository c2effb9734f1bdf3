//go:build linux

package wg

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l3router"
)

// steeredDevice starts a device with Steer on and loops loops whose
// router has a site (198.18.30.0/24) and n clients (198.18.161.i/32);
// without eBPF it skips, or fails under CI=true.
func steeredDevice(t *testing.T, loops, n int) *Device {
	t.Helper()
	peers := []l3router.PeerConfig{{Name: "site", Kind: l3router.KindConnector, Routes: []netip.Prefix{netip.MustParsePrefix("198.18.30.0/24")}}}
	for i := range n {
		peers = append(peers, l3router.PeerConfig{Name: l3router.PeerID(fmt.Sprint("c", i)), Kind: l3router.KindClient,
			Routes: []netip.Prefix{netip.PrefixFrom(clientAddr(i), 32)}})
	}
	router, err := l3router.New(l3router.Config{Address4: netip.MustParseAddr("198.18.160.1"), Peers: peers})
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{PrivateKey: newKey(t), Router: router, Loops: loops, Steer: true, Logger: testLogger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if st, _ := d.Steering(); !st.On {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true and the steering program does not load (the device's log says why)")
		}
		t.Skip("the steering program does not load here (no eBPF?)")
	}
	if len(d.socks4) != loops+1 {
		t.Fatalf("%d IPv4 sockets, want the handshake socket and %d loops'", len(d.socks4), loops)
	}
	return d
}

func clientAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 161, byte(i + 1)}) }

// TestSteering peers 64 stock wireguard-go clients and a site with a
// device of two loops and the steering program: the clients are spread
// over the loops half and half, every session of a client is steered to
// its loop (read back from the program's map), the loops get the
// datagrams half and half within 15%, each client's packets arrive in
// order, and a client whose source port changes stays on its loop.
func TestSteering(t *testing.T) {
	const clients, loops, perClient = 64, 2, 40
	d := steeredDevice(t, loops, clients)
	ks := newKey(t)
	pSite, err := d.AddPeer("site", ks.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	site := newNode(t, d, "site", ks, true, "127.0.0.1")
	nodes := make([]*node, clients)
	peers := make([]*Peer, clients)
	for i := range nodes {
		k := newKey(t)
		name := fmt.Sprint("c", i)
		if peers[i], err = d.AddPeer(l3router.PeerID(name), k.PublicKey()); err != nil {
			t.Fatal(err)
		}
		nodes[i] = newNode(t, d, name, k, true, "127.0.0.1")
	}
	// Every client has a session before the data: packets a peer stages
	// during its first handshake are not the test's subject.
	deadline := time.Now().Add(20 * time.Second)
	for _, p := range append(peers, pSite) {
		for p.Stats().LastHandshake.IsZero() {
			if time.Now().After(deadline) {
				t.Fatalf("peer %s: no handshake in 20 s", p.name)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Each client sends perClient numbered packets to the site, which
	// reads them until the last of each has come or nothing comes for a
	// second: within a client, none may come after a later one (a loss,
	// rare on loopback, is counted and bounded).
	got := make(chan error, 1)
	go func() {
		next := make([]int, clients)
		lost, done := 0, 0
		for done < clients {
			select {
			case p := <-site.ct.Inbound:
				c, seq, ok := strings.Cut(strings.TrimPrefix(string(p[28:]), "c"), " ")
				if !ok {
					continue
				}
				i, _ := strconv.Atoi(c)
				s, _ := strconv.Atoi(seq)
				if s < next[i] {
					got <- fmt.Errorf("client %d: packet %d arrived after %d", i, s, next[i]-1)
					return
				}
				lost += s - next[i]
				next[i] = s + 1
				if s == perClient-1 {
					done++
				}
			case <-time.After(5 * time.Second):
				done = clients
			}
		}
		n := 0
		for _, v := range next {
			n += v
		}
		if lost > clients*perClient/100 || n < clients*perClient*9/10 {
			got <- fmt.Errorf("the site has %v of %d packets per client, %d lost in between", next, perClient, lost)
			return
		}
		got <- nil
	}()
	before, err := d.Steering()
	if err != nil {
		t.Fatal(err)
	}
	for s := range perClient {
		for i, n := range nodes {
			n.send(t, udp(t, clientAddr(i), hostIP, fmt.Sprintf("c%d %d", i, s)))
		}
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	after, err := d.Steering()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("steering: peers per loop %v, datagrams per socket %v (before the data %v), unsteered %d", after.Peers, after.V4, before.V4, after.Unsteered)
	if after.Peers[1] < clients/2 || after.Peers[2] < clients/2 {
		t.Errorf("peers per loop %v: want the clients half and half", after.Peers)
	}
	var sum uint64
	per := make([]uint64, loops+1)
	for s := 1; s <= loops; s++ {
		per[s] = after.V4[s] - before.V4[s]
		sum += per[s]
	}
	for s := 1; s <= loops; s++ {
		if share := float64(per[s]) * loops / float64(sum); share < 0.85 || share > 1.15 {
			t.Errorf("loop %d got %d of %d datagrams: %.2f of its share, want within 15%%", s, per[s], sum, share)
		}
	}
	// Every session of a peer is steered to the peer's loop.
	slotOf := func(p *Peer) int {
		t.Helper()
		slot := -1
		for i := range indexOf(d, p) {
			s, ok := d.SteeredSlot(i)
			if !ok || slot >= 0 && s != slot {
				t.Fatalf("peer %s: index %#x steered to %d (%v), another to %d", p.name, i, s, ok, slot)
			}
			slot = s
		}
		if slot < 1 {
			t.Fatalf("peer %s has no steered index", p.name)
		}
		return slot
	}
	for _, p := range append(peers, pSite) {
		slotOf(p)
	}

	// Client 0's source port changes (its NAT rebinds): it keeps its
	// loop, and the datagrams it sends from the new port go there.
	c0 := nodes[0]
	oldPort := c0.port(t)
	if err := c0.dev.IpcSet("listen_port=0\n"); err != nil {
		t.Fatal(err)
	}
	if c0.port(t) == oldPort {
		t.Fatal("the client's port did not change")
	}
	slot := slotOf(peers[0])
	before, _ = d.Steering()
	const burst = 400
	for s := range burst {
		c0.send(t, udp(t, clientAddr(0), hostIP, fmt.Sprintf("rebound %d", s)))
		if s == burst-1 {
			site.expect(t, fmt.Sprintf("rebound %d", s), 10*time.Second)
		}
	}
	after, _ = d.Steering()
	if ep := peers[0].Stats().Endpoint; ep.Port() != c0.port(t) {
		t.Fatalf("the device has the client at %v, not at its new port %d", ep, c0.port(t))
	}
	mine, other := after.V4[slot]-before.V4[slot], after.V4[3-slot]-before.V4[3-slot]
	t.Logf("after the rebind: %d datagrams on the client's loop %d, %d on the other", mine, slot, other)
	if mine < burst || mine < other+burst/2 {
		t.Fatalf("after the rebind the client's loop %d got %d datagrams and the other %d: want its %d there", slot, mine, other, burst)
	}
	if s := slotOf(peers[0]); s != slot {
		t.Fatalf("the client moved from loop %d to %d", slot, s)
	}

	// A removed client leaves its loop, and its indexes the map.
	idx := indexOf(d, peers[0])
	d.RemovePeer(peers[0].remote.pub)
	st, _ := d.Steering()
	if st.Peers[slot] != after.Peers[slot]-1 {
		t.Errorf("after removing the client, loop %d has %d peers, want %d", slot, st.Peers[slot], after.Peers[slot]-1)
	}
	for i := range idx {
		if s, ok := d.SteeredSlot(i); ok {
			t.Errorf("the removed client's index %#x is still steered to loop %d", i, s)
		}
	}
}
