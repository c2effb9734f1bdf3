//go:build linux

package wg

import (
	"encoding/binary"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// session gives p a current session with fixed keys (recvKey for what it
// sends us, sendKey for what we send it) and an endpoint, as a completed
// handshake would.
func session(d *Device, p *Peer, recvKey, sendKey byte, ep netip.AddrPort) *keypair {
	var rk, sk [32]byte
	for i := range rk {
		rk[i], sk[i] = recvKey, sendKey
	}
	kp := &keypair{peer: p, created: d.now(), recv: newAEAD(&rk), send: newAEAD(&sk), remoteIndex: uint32(sendKey)}
	kp.local = d.newIndex(indexEntry{peer: p, kp: kp})
	p.current.Store(kp)
	p.SetEndpoint(ep)
	return kp
}

// seal returns the transport message that the peer holding kp's other end
// sends with counter ctr.
func sealFor(kp *keypair, key byte, ctr uint64, pkt []byte) []byte {
	var k [32]byte
	for i := range k {
		k[i] = key
	}
	n := padded(len(pkt), 1420)
	msg := make([]byte, sizeTransportHdr+n+sizeTag)
	copy(msg[sizeTransportHdr:], pkt)
	putHeader(msg, kp.local, ctr)
	var nonce [12]byte
	binary.LittleEndian.PutUint64(nonce[4:], ctr)
	newAEAD(&k).Seal(msg[sizeTransportHdr:sizeTransportHdr], nonce[:], msg[sizeTransportHdr:sizeTransportHdr+n], nil)
	return msg
}

// benchRig is a device with the client and site peers in session, the
// site's endpoint a UDP socket that nobody reads (the kernel drops what
// overflows it).
func benchRig(tb testing.TB) (*Device, *loop, *keypair, netip.AddrPort) {
	d, err := New(Config{PrivateKey: newKey(tb), Router: testRouter(tb), Loops: 1, Logger: testLogger})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	ep := sink(tb)
	pc, err := d.AddPeer("client", newKey(tb).PublicKey())
	if err != nil {
		tb.Fatal(err)
	}
	ps, err := d.AddPeer("site", newKey(tb).PublicKey())
	if err != nil {
		tb.Fatal(err)
	}
	kc := session(d, pc, 1, 2, ep)
	session(d, ps, 3, 4, ep)
	// As on an edge, packets arrive at and leave from a local address of
	// the device (the sticky source: IP_PKTINFO on every message).
	lo := local{addr: netip.MustParseAddr("127.0.0.1"), ifindex: 1}
	ps.setEndpoint(endpoint{ep, lo})
	l := &loop{d: d, arena: make([]byte, arenaSize), out4: d.socks4[0].newBatch(), local: lo}
	settle(tb)
	return d, l, kc, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 40000)
}

// settle waits until the goroutines a device starts have made their
// buffers (a loop's ICMP arena, a TUN device's batch buffers: megabytes
// of them), so that a benchmark's B/op and an AllocsPerRun count the path
// measured, not the device starting up in the background.
func settle(tb testing.TB) {
	tb.Helper()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	last, still := ms.Mallocs, 0
	for deadline := time.Now().Add(5 * time.Second); still < 3; {
		if time.Now().After(deadline) {
			tb.Fatal("the device's goroutines keep allocating")
		}
		time.Sleep(10 * time.Millisecond)
		runtime.ReadMemStats(&ms)
		// A few allocations a tick are the timers (a peer list every
		// tickEvery) and the runtime's own.
		if ms.Mallocs-last <= 4 {
			still++
		} else {
			still = 0
		}
		last = ms.Mallocs
	}
}

// BenchmarkForward is the device's hot path for one packet: decrypt a
// client's 1420-byte packet in place, route it, encrypt it for the
// connector and queue it (a sendmmsg with GSO per 64 packets).
func BenchmarkForward(b *testing.B) {
	d, l, kc, src := benchRig(b)
	pkt := udp(b, clientIP, hostIP, string(make([]byte, 1420-28)))
	msg := sealFor(kc, 1, 0, pkt)
	buf := make([]byte, len(msg)*64)
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	b.ResetTimer()
	now := d.now()
	for i := 0; i < b.N; i++ {
		j := i % 64
		m := buf[j*len(msg) : (j+1)*len(msg)]
		copy(m, msg)
		kc.replay.reset() // the same message again
		l.transport(m, src, now)
		if j == 63 {
			l.flush()
		}
	}
	l.flush()
	if st := d.router.Stats().Peers["site"]; st.TxPackets < uint64(b.N) {
		b.Fatalf("forwarded %d of %d", st.TxPackets, b.N)
	}
}

// TestForwardAllocs holds the path BenchmarkForward measures to zero
// allocations: the edge forwards a batch of 64 client packets (decrypt in
// place, route, encrypt for the connector, queue, one sendmmsg) without
// allocating, and so it handles a packet it answers with an ICMP error, a
// replayed packet and a keepalive. A batch per run: an allocation per
// batch would hide in a per-packet average.
func TestForwardAllocs(t *testing.T) {
	d, l, kc, src := benchRig(t)
	pkt := udp(t, clientIP, hostIP, string(make([]byte, 1420-28)))
	var msgs [][]byte
	for i := range 64 {
		msgs = append(msgs, sealFor(kc, 1, uint64(i), pkt))
	}
	buf := make([]byte, len(msgs[0])*len(msgs))
	deliver := func(msgs ...[]byte) {
		l.cValid, l.used = false, 0
		off := 0
		for _, m := range msgs {
			b := buf[off : off+len(m)]
			off += len(m)
			copy(b, m)
			l.transport(b, src, d.now())
		}
		l.flush()
	}
	const runs = 100
	site := func() uint64 { return d.router.Stats().Peers["site"].TxPackets }
	before := site()
	if n := testing.AllocsPerRun(runs, func() {
		kc.replay.reset()
		deliver(msgs...)
	}); n != 0 {
		t.Errorf("%v allocations per batch of 64 packets forwarded, want 0", n)
	}
	// AllocsPerRun runs the function once more, to warm up.
	if got := site() - before; got != (runs+1)*64 {
		t.Fatalf("forwarded %d packets, want %d", got, (runs+1)*64)
	}

	icmp := sealFor(kc, 1, 0, udp(t, clientIP, netip.MustParseAddr("198.18.99.1"), "no route"))
	keepalive := sealFor(kc, 1, 1, nil)
	kc.replay.reset()
	deliver(msgs[5]) // seen: it comes again below
	st0 := d.router.Stats()
	for _, c := range []struct {
		what string
		run  func()
	}{
		{"a replay refused", func() { deliver(msgs[5]) }},
		{"an ICMP error sent back", func() { kc.replay.reset(); deliver(icmp) }},
		{"a keepalive", func() { kc.replay.reset(); deliver(keepalive) }},
	} {
		if n := testing.AllocsPerRun(runs, c.run); n != 0 {
			t.Errorf("%v allocations for %s, want 0", n, c.what)
		}
	}
	st := d.router.Stats()
	if got := st.ICMPErrors - st0.ICMPErrors; got != runs+1 {
		t.Errorf("%d ICMP errors sent, want %d", got, runs+1)
	}
	if got := st.Peers["site"].TxPackets - st0.Peers["site"].TxPackets; got != 0 {
		t.Errorf("%d replayed packets forwarded", got)
	}
}
