//go:build linux

package wg

import (
	"encoding/binary"
	"net/netip"
	"testing"
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
	l := &loop{d: d, arena: make([]byte, arenaSize), out4: &sender{s: d.socks4[0]}}
	return d, l, kc, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 40000)
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
		kc.replay = replayWindow{} // the same message again
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
