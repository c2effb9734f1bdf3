//go:build linux

package wg

import (
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"golang.zx2c4.com/wireguard/tun"
)

// nullTUN is a tun.Device whose Read waits for Close and whose Write
// counts and discards.
type nullTUN struct {
	events    chan tun.Event
	closed    chan struct{}
	closeOnce sync.Once
	written   atomic.Uint64
}

func newNullTUN() *nullTUN {
	return &nullTUN{events: make(chan tun.Event), closed: make(chan struct{})}
}

func (t *nullTUN) File() *os.File { return nil }
func (t *nullTUN) Read([][]byte, []int, int) (int, error) {
	<-t.closed
	return 0, os.ErrClosed
}
func (t *nullTUN) Write(bufs [][]byte, _ int) (int, error) {
	t.written.Add(uint64(len(bufs)))
	return len(bufs), nil
}
func (t *nullTUN) MTU() (int, error)        { return 1420, nil }
func (t *nullTUN) Name() (string, error)    { return "null", nil }
func (t *nullTUN) Events() <-chan tun.Event { return t.events }
func (t *nullTUN) BatchSize() int           { return 128 }
func (t *nullTUN) Close() error {
	t.closeOnce.Do(func() { close(t.closed); close(t.events) })
	return nil
}

// tunRig is a TUN device with its one peer in session, the peer's
// endpoint a UDP socket nobody reads.
func tunRig(tb testing.TB) (*Device, *nullTUN, *Peer, *keypair) {
	nt := newNullTUN()
	d, err := New(Config{PrivateKey: newKey(tb), TUN: nt, Loops: 1, Logger: testLogger})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	p, err := d.AddPeer("edge", newKey(tb).PublicKey())
	if err != nil {
		tb.Fatal(err)
	}
	p.SetAllowedIPs([]netip.Prefix{netip.MustParsePrefix("198.18.160.0/20")})
	kp := session(d, p, 1, 2, sink(tb))
	settle(tb)
	return d, nt, p, kp
}

// BenchmarkToTUN is a connector's receive path per packet: decrypt a
// 1420-byte packet from the edge straight into the TUN batch, check its
// source, and write the batch (128 packets) to the TUN.
func BenchmarkToTUN(b *testing.B) {
	d, nt, _, kp := tunRig(b)
	l := &loop{d: d, arena: make([]byte, arenaSize)}
	l.initTUN()
	pkt := udp(b, clientIP, hostIP, string(make([]byte, 1420-28)))
	msg := sealFor(kp, 1, 0, pkt)
	src := netip.MustParseAddrPort("127.0.0.1:40000")
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	now := d.now()
	for i := 0; b.Loop(); i++ {
		kp.replay.reset() // the same message again
		l.transport(msg, src, now)
		if l.ntun == tunBatchLen {
			l.flushTUN()
		}
	}
	l.flush()
	if nt.written.Load() == 0 {
		b.Fatal("nothing reached the TUN")
	}
}

// BenchmarkFromTUN is a connector's send path per packet: a batch of 128
// 1420-byte packets read from the TUN, encrypted in place for the edge and
// sent with GSO.
func BenchmarkFromTUN(b *testing.B) {
	d, _, p, _ := tunRig(b)
	l := &loop{d: d, out4: d.socks4[0].newBatch()}
	pkt := udp(b, hostIP, clientIP, string(make([]byte, 1420-28)))
	mem := make([][]byte, 128)
	sizes := make([]int, 128)
	for i := range mem {
		mem[i] = make([]byte, tunOffset+1420+sizeTag)
		sizes[i] = len(pkt)
	}
	b.SetBytes(int64(len(pkt) * len(mem)))
	b.ReportAllocs()
	now := d.now()
	for b.Loop() {
		for _, m := range mem {
			copy(m[tunOffset:], pkt)
		}
		l.fromTUN(p, mem, sizes, now)
	}
	if p.Stats().TxBytes == 0 {
		b.Fatal("nothing sent")
	}
}

// TestToTUNAllocs holds BenchmarkToTUN's path to zero allocations: a
// connector decrypts a batch of 128 packets from the edge into its TUN
// batch and writes it.
func TestToTUNAllocs(t *testing.T) {
	d, nt, _, kp := tunRig(t)
	l := &loop{d: d, arena: make([]byte, arenaSize)}
	l.initTUN()
	pkt := udp(t, clientIP, hostIP, string(make([]byte, 1420-28)))
	var msgs [][]byte
	for i := range tunBatchLen {
		msgs = append(msgs, sealFor(kp, 1, uint64(i), pkt))
	}
	src := netip.MustParseAddrPort("127.0.0.1:40000")
	const runs = 100
	if n := testing.AllocsPerRun(runs, func() {
		kp.replay.reset()
		l.cValid = false
		for _, m := range msgs {
			l.transport(m, src, d.now()) // decrypted into the TUN batch: m stays as it is
		}
		l.flush()
	}); n != 0 {
		t.Errorf("%v allocations per batch of %d packets to the TUN, want 0", n, tunBatchLen)
	}
	if got := nt.written.Load(); got != (runs+1)*tunBatchLen {
		t.Fatalf("%d packets written to the TUN, want %d", got, (runs+1)*tunBatchLen)
	}
}

// TestFromTUNAllocs holds BenchmarkFromTUN's path to zero allocations: a
// connector encrypts a batch of 128 packets read from its TUN in place and
// sends them with GSO.
func TestFromTUNAllocs(t *testing.T) {
	d, _, p, _ := tunRig(t)
	l := &loop{d: d, out4: d.socks4[0].newBatch()}
	pkt := udp(t, hostIP, clientIP, string(make([]byte, 1420-28)))
	mem := make([][]byte, 128)
	sizes := make([]int, 128)
	for i := range mem {
		mem[i] = make([]byte, tunOffset+1420+sizeTag)
		sizes[i] = len(pkt)
	}
	const runs = 100
	before := p.Stats().TxBytes
	if n := testing.AllocsPerRun(runs, func() {
		for _, m := range mem {
			copy(m[tunOffset:], pkt)
		}
		l.fromTUN(p, mem, sizes, d.now())
	}); n != 0 {
		t.Errorf("%v allocations per batch of %d packets from the TUN, want 0", n, len(mem))
	}
	if got, want := p.Stats().TxBytes-before, uint64((runs+1)*len(mem)*(sizeTransportHdr+padded(len(pkt), 1420)+sizeTag)); got != want {
		t.Fatalf("sent %d bytes, want %d", got, want)
	}
}

// TestTUNAllowedIPs: the TUN device takes from its peer only packets
// whose source is in its allowed IPs, and sends it only those whose
// destination is.
func TestTUNAllowedIPs(t *testing.T) {
	d, nt, p, kp := tunRig(t)
	l := &loop{d: d, arena: make([]byte, arenaSize), out4: d.socks4[0].newBatch()}
	l.initTUN()
	src := netip.MustParseAddrPort("127.0.0.1:40000")
	now := d.now()
	l.transport(sealFor(kp, 1, 1, udp(t, clientIP, hostIP, "allowed")), src, now)
	l.transport(sealFor(kp, 1, 2, udp(t, hostIP, clientIP, "not allowed")), src, now)
	l.transport(sealFor(kp, 1, 3, []byte("not an IP packet at all, not at all")), src, now)
	l.flush()
	if n := nt.written.Load(); n != 1 {
		t.Errorf("%d packets reached the TUN, want 1", n)
	}
	if st := p.Stats(); st.Dropped != 2 {
		t.Errorf("peer dropped %d, want 2", st.Dropped)
	}
	mem := [][]byte{make([]byte, 2048), make([]byte, 2048)}
	copy(mem[0][tunOffset:], udp(t, hostIP, clientIP, "to a client"))
	copy(mem[1][tunOffset:], udp(t, clientIP, hostIP, "to the LAN"))
	before := p.Stats().TxBytes
	l.fromTUN(p, mem, []int{len(udp(t, hostIP, clientIP, "to a client")), len(udp(t, clientIP, hostIP, "to the LAN"))}, now)
	if sent := p.Stats().TxBytes - before; sent != uint64(sizeTransportHdr+padded(28+len("to a client"), 1420)+sizeTag) {
		t.Errorf("sent %d bytes, want the one packet to a client", sent)
	}
}
