package l3router

import (
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onramp-net/onramp/dataplane/packet"
	"golang.zx2c4.com/wireguard/tun"
)

// BenchmarkRouterWriteRead routes batches of 128 1420-byte IPv4 UDP packets
// from a client to a connector's subnet: Write (parse, checksum, lookups,
// ACL, TTL, copy into the queue) then Read (copy out), as wireguard-go calls
// them, with its 16-byte headroom.
func BenchmarkRouterWriteRead(b *testing.B) {
	for _, size := range []int{64, 1420} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			r := newTestRouter(b, nil)
			bufs, orig := batch(b, BatchSize, size)
			rb := make([][]byte, BatchSize)
			for i := range rb {
				rb[i] = make([]byte, wgOffset+65535)
			}
			sizes := make([]int, BatchSize)
			b.SetBytes(int64(BatchSize * size))
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				resetTTL(bufs, orig)
				r.Write(bufs, wgOffset)
				if n, err := r.Read(rb, sizes, wgOffset); n != BatchSize || err != nil {
					b.Fatalf("Read = %d, %v", n, err)
				}
			}
			b.ReportMetric(float64(b.N*BatchSize)/time.Since(start).Seconds(), "pkts/s")
		})
	}
}

// BenchmarkRouterPipeline has one writer (wireguard-go's receive side)
// and one reader goroutine (its TUN reader) on different cores: the
// cross-core handoff through the ring, with drops when the reader falls
// behind.
func BenchmarkRouterPipeline(b *testing.B) {
	r := newTestRouter(b, nil)
	var read atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		rb := make([][]byte, BatchSize)
		for i := range rb {
			rb[i] = make([]byte, wgOffset+2000)
		}
		sizes := make([]int, BatchSize)
		for {
			n, err := r.Read(rb, sizes, wgOffset)
			if err != nil {
				return
			}
			read.Add(int64(n))
		}
	}()
	bufs, orig := batch(b, BatchSize, 1420)
	b.SetBytes(BatchSize * 1420)
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		resetTTL(bufs, orig)
		r.Write(bufs, wgOffset)
	}
	el := time.Since(start)
	r.Close()
	<-done
	s := r.Stats().Peers["alice"]
	b.ReportMetric(float64(read.Load())/el.Seconds(), "pkts/s")
	b.ReportMetric(100*float64(s.Drops[DropQueueFull])/float64(s.RxPackets), "%dropped")
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

// benchTUN is a batched in-memory TUN. As a source its Read emits copies of
// pkt, up to allowed in total and at most window packets ahead of what sink
// has received (packets in flight are written off as lost after a stall;
// the window equals the router's default queue so that the benchmark
// measures the steady state, not the drops of a burst);
// as a sink its Write counts.
type benchTUN struct {
	pkt     []byte
	window  int64
	sink    *benchTUN
	emitted atomic.Int64 // written by the Read goroutine only
	allowed atomic.Int64
	lost    atomic.Int64
	recv    atomic.Int64
	// progress is pinged by the sink's Write.
	progress chan struct{}

	events    chan tun.Event
	closed    chan struct{}
	closeOnce sync.Once
}

func newBenchTUN() *benchTUN {
	t := &benchTUN{events: make(chan tun.Event, 1), closed: make(chan struct{}), window: 1024, progress: make(chan struct{}, 1)}
	t.events <- tun.EventUp
	return t
}

func (t *benchTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if t.sink == nil {
		<-t.closed
		return 0, os.ErrClosed
	}
	stall := time.NewTimer(20 * time.Millisecond)
	defer stall.Stop()
	for {
		recv, emitted := t.sink.recv.Load(), t.emitted.Load()
		inflight := emitted - t.lost.Load() - recv
		room := min(t.window-inflight, t.allowed.Load()-emitted)
		if room > 0 {
			n := int(min(int64(len(bufs)), room))
			for i := range n {
				sizes[i] = copy(bufs[i][offset:], t.pkt)
			}
			t.emitted.Add(int64(n))
			return n, nil
		}
		stall.Reset(20 * time.Millisecond)
		select {
		case <-t.closed:
			return 0, os.ErrClosed
		case <-t.sink.progress:
		case <-stall.C:
			if inflight > 0 && t.sink.recv.Load() == recv {
				t.lost.Add(inflight)
			}
		}
	}
}

func (t *benchTUN) Write(bufs [][]byte, offset int) (int, error) {
	t.recv.Add(int64(len(bufs)))
	select {
	case t.progress <- struct{}{}:
	default:
	}
	return len(bufs), nil
}

func (t *benchTUN) File() *os.File           { return nil }
func (t *benchTUN) MTU() (int, error)        { return DefaultMTU, nil }
func (t *benchTUN) Name() (string, error)    { return "bench", nil }
func (t *benchTUN) Events() <-chan tun.Event { return t.events }
func (t *benchTUN) BatchSize() int           { return BatchSize }
func (t *benchTUN) Close() error {
	t.closeOnce.Do(func() { close(t.closed); close(t.events) })
	return nil
}

// BenchmarkEndToEnd sends 1420-byte IPv4 UDP packets from a client
// wireguard-go device to a connector device over UDP on 127.0.0.1, directly
// and through an edge device whose TUN is the Router. One op is one packet
// emitted by the client's TUN; pkts/s counts those delivered to the
// connector's TUN. Compare the two pkts/s of one run.
func BenchmarkEndToEnd(b *testing.B) {
	for _, mode := range []string{"direct", "via-edge"} {
		b.Run(mode, func(b *testing.B) {
			src, sink := newBenchTUN(), newBenchTUN()
			src.sink = sink
			src.pkt = udpPacket(b, aliceV4, hostA4, 64, 1420)
			client := newWGNode(b, "client", src, nil)
			conn := newWGNode(b, "conn", sink, nil)
			var r *Router
			if mode == "direct" {
				client.addPeer(b, conn, lanA4)
				conn.addPeer(b, client, host(aliceV4))
			} else {
				r = newTestRouter(b, nil)
				edge := newWGNode(b, "edge", r, nil)
				edge.addPeer(b, client, r.AllowedIPs("alice")...)
				edge.addPeer(b, conn, r.AllowedIPs("conn-a")...)
				client.addPeer(b, edge, lanA4)
				conn.addPeer(b, edge, host(aliceV4))
			}
			// Warm up: one packet at a time until one gets through the
			// handshake(s), then let the rest in flight settle.
			for i := int64(1); sink.recv.Load() < 1; i++ {
				src.allowed.Store(i)
				select {
				case src.sink.progress <- struct{}{}: // wake Read
				default:
				}
				time.Sleep(50 * time.Millisecond)
			}
			for sink.recv.Load()+src.lost.Load() < src.emitted.Load() {
				time.Sleep(time.Millisecond)
			}
			base, recv0, lost0 := src.emitted.Load(), sink.recv.Load(), src.lost.Load()
			var qf0 uint64
			if r != nil {
				qf0 = r.Stats().Peers["alice"].Drops[DropQueueFull]
			}
			b.SetBytes(1420)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			src.allowed.Store(base + int64(b.N))
			select {
			case sink.progress <- struct{}{}:
			default:
			}
			for sink.recv.Load()+src.lost.Load() < base+int64(b.N) {
				time.Sleep(200 * time.Microsecond)
			}
			el := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(sink.recv.Load()-recv0)/el.Seconds(), "pkts/s")
			b.ReportMetric(100*float64(src.lost.Load()-lost0)/float64(b.N), "%lost")
			if r != nil {
				s := r.Stats().Peers["alice"]
				b.ReportMetric(100*float64(s.Drops[DropQueueFull]-qf0)/float64(b.N), "%router-queue-full")
			}
		})
	}
}
