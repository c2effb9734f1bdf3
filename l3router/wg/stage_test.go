//go:build linux

package wg

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l3router"
	"github.com/onramp-net/onramp/l3router/l3config"
)

// stagingRig is a device with the connector "site" in session and n
// clients (198.19.0.0/16) without an endpoint, as clients that never
// connected are; deliver routes a packet from the site to client i
// through the device's receive path.
type stagingRig struct {
	d       *Device
	l       *loop
	site    *keypair
	clients []*Peer
	ctr     uint64
}

func newStagingRig(t *testing.T, n, maxStaged int) *stagingRig {
	t.Helper()
	cfg := l3router.Config{
		Address4: netip.MustParseAddr("198.18.160.1"),
		Peers:    []l3router.PeerConfig{{Name: "site", Kind: l3router.KindConnector, Routes: []netip.Prefix{netip.MustParsePrefix("198.18.30.0/24")}}},
	}
	for i := range n {
		cfg.Peers = append(cfg.Peers, l3router.PeerConfig{Name: l3router.PeerID(fmt.Sprint("c", i)), Kind: l3router.KindClient,
			Routes: []netip.Prefix{netip.PrefixFrom(stagingClientIP(i), 32)}})
	}
	router, err := l3router.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{PrivateKey: newKey(t), Router: router, Loops: 1, Logger: testLogger, MaxStagedBytes: maxStaged})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	ps, err := d.AddPeer("site", newKey(t).PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	r := &stagingRig{d: d, l: &loop{d: d, arena: make([]byte, arenaSize), out4: d.socks4[0].newBatch()}}
	r.site = session(d, ps, 3, 4, sink(t))
	for i := range n {
		var pub l3config.Key // any key: these peers never handshake
		rand.Read(pub[:])
		p, err := d.AddPeer(l3router.PeerID(fmt.Sprint("c", i)), pub)
		if err != nil {
			t.Fatal(err)
		}
		r.clients = append(r.clients, p)
	}
	return r
}

func stagingClientIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)})
}

// deliver routes a packet of size bytes from a LAN host behind the site
// to client i, ending in tag, at the device clock now.
func (r *stagingRig) deliver(t *testing.T, i, size int, tag string, now int64) {
	t.Helper()
	pkt := udp(t, hostIP, stagingClientIP(i), string(make([]byte, size-28-len(tag)))+tag)
	r.l.cValid, r.l.used = false, 0
	r.l.transport(sealFor(r.site, 3, r.ctr, pkt), netip.MustParseAddrPort("127.0.0.1:40000"), now)
	r.ctr++
	r.l.flush()
}

// TestStagingBounds: a peer without a session holds its newest 128
// packets; those older than a handshake attempt (90 s) go, and so do a
// removed peer's; each drop is counted by its reason, and the device's
// account returns to zero.
func TestStagingBounds(t *testing.T) {
	r := newStagingRig(t, 2, 0)
	d, p := r.d, r.clients[0]
	t0 := d.now()
	for i := range 200 {
		at := t0
		if i >= 136 {
			at = t0 + int64(60*time.Second) // the newest 64 a minute later
		}
		r.deliver(t, 0, 100, fmt.Sprintf("packet %03d", i), at)
	}
	st := d.StagingStats()
	cost := int64(padded(100, 1420) + stagedOverhead) // the padding is kept
	if st.Packets != maxStaged || st.PeerFull != 200-maxStaged || st.Bytes != maxStaged*cost {
		t.Fatalf("after 200 packets for one peer: %+v, want %d held (%d bytes), %d dropped for the peer's limit",
			st, maxStaged, maxStaged*cost, 200-maxStaged)
	}
	p.mu.Lock()
	oldest := p.staged[0].b
	p.mu.Unlock()
	if !bytes.Contains(oldest, []byte("packet 072")) {
		t.Fatalf("the oldest packet held is not packet 072: the oldest go first")
	}

	// 90 s after the first ones: those go, the newer 64 wait on.
	d.tick(p, t0+int64(rekeyAttemptTime))
	if st := d.StagingStats(); st.Packets != 64 || st.Expired != 64 {
		t.Fatalf("after 90 s: %+v, want 64 held, 64 expired", st)
	}
	d.tick(p, t0+int64(60*time.Second+rekeyAttemptTime))
	if st := d.StagingStats(); st.Packets != 0 || st.Bytes != 0 || st.Expired != 128 {
		t.Fatalf("after 150 s: %+v, want none held, 128 expired", st)
	}
	p.mu.Lock()
	if p.staged != nil {
		t.Error("an empty queue keeps its memory")
	}
	p.mu.Unlock()

	// A removed peer's packets go with it.
	for i := range 10 {
		r.deliver(t, 1, 100, fmt.Sprint(i), d.now())
	}
	d.RemovePeer(r.clients[1].PublicKey())
	if st := d.StagingStats(); st.Packets != 0 || st.Bytes != 0 || st.Removed != 10 {
		t.Fatalf("after the removal: %+v, want none held, 10 removed", st)
	}
}

// TestStagingDeviceBudget: 10,000 clients that never connected (2,000
// under the race detector), and a LAN
// host sending to each: the device holds at most its budget for all of
// them (the heap grows by no more), counts the rest as dropped for it,
// and lets everything go once it is older than a handshake attempt.
func TestStagingDeviceBudget(t *testing.T) {
	const perClient, size, budget = 1, 1420, 128 << 10
	clients := 10000
	if raceEnabled {
		clients = 2000
	}
	r := newStagingRig(t, clients, budget)
	d := r.d
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	r.deliver(t, 0, size, "warm-up", d.now()) // the loop's and the router's first use
	before := heap()
	t0 := d.now()
	for k := range perClient {
		for i := range clients {
			r.deliver(t, i, size, fmt.Sprint(k), t0)
		}
	}
	grown := int64(heap()) - int64(before)
	st := d.StagingStats()
	sent := uint64(clients*perClient + 1)
	t.Logf("%d packets of %d bytes for %d clients without an endpoint: %d held (%d bytes), %d dropped for the budget of %d bytes; heap grew by %d KiB",
		sent, size, clients, st.Packets, st.Bytes, st.DeviceFull, budget, grown>>10)
	if st.Bytes > budget || st.Packets != st.Bytes/(size+stagedOverhead) {
		t.Errorf("held %d packets, %d bytes: over the budget of %d", st.Packets, st.Bytes, budget)
	}
	if uint64(st.Packets)+st.DeviceFull != sent {
		t.Errorf("%d held + %d dropped for the budget, want the %d sent", st.Packets, st.DeviceFull, sent)
	}
	// What is held, with the packets' allocation rounding, plus the
	// queues and some slack.
	if grown > 2*budget+1<<20 {
		t.Errorf("the heap grew by %d KiB staging for %d clients, budget %d KiB", grown>>10, clients, budget>>10)
	}
	for _, p := range r.clients {
		d.tick(p, t0+int64(rekeyAttemptTime))
	}
	if st := d.StagingStats(); st.Packets != 0 || st.Bytes != 0 {
		t.Errorf("after 90 s: %+v, want nothing held", st)
	}
}

// TestStagedSent: packets for a peer the device has no session with wait
// for the handshake it starts, all arrive, and leave the device's
// account.
func TestStagedSent(t *testing.T) {
	r := newRig(t, false)
	r.pClient.SetEndpoint(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), r.client.port(t)))
	for i := range 3 {
		r.site.send(t, udp(t, hostIP, clientIP, fmt.Sprint("waited ", i)))
	}
	for i := range 3 {
		r.client.expect(t, fmt.Sprint("waited ", i), 10*time.Second)
	}
	if st := r.dev.StagingStats(); st.Packets != 0 || st.Bytes != 0 {
		t.Errorf("after the handshake: %+v, want nothing held", st)
	}
}
