package l3router

import (
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrent runs four writers (wireguard-go's per-peer receive
// goroutines), one reader and a goroutine changing routes and the ACL, and
// checks that every packet is accounted for: read, or dropped by a reason.
func TestConcurrent(t *testing.T) {
	r := newTestRouter(t, func(c *Config) { c.QueueLen = 256 })
	const writers, batches = 4, 300
	var read atomic.Int64
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		rb := make([][]byte, BatchSize)
		for i := range rb {
			rb[i] = make([]byte, wgOffset+1500)
		}
		sizes := make([]int, BatchSize)
		for {
			n, err := r.Read(rb, sizes, wgOffset)
			if err != nil {
				return
			}
			for i := range n {
				p := rb[i][wgOffset : wgOffset+sizes[i]]
				if p[0]>>4 == 4 && p[8] != 63 && p[12] != 198 /* not from routerV4 */ || p[0]>>4 == 6 && p[7] != 63 && p[7] != 64 {
					t.Errorf("bad packet read: %x", p[:20])
				}
			}
			read.Add(int64(n))
		}
	}()
	stop := make(chan struct{})
	ctlDone := make(chan struct{})
	go func() {
		defer close(ctlDone)
		extra := netip.MustParsePrefix("198.19.11.0/24")
		dave4 := netip.MustParseAddr("198.18.1.5")
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%2 == 0 {
				r.AddRoute(extra, "conn-a")
			} else {
				r.RemoveOwner("conn-a")
				r.AddRoute(lanA4, "conn-a")
				r.AddRoute(lanA6, "conn-a")
			}
			// A client comes and goes: its slot is reused while batches run.
			if err := r.AddPeer(PeerConfig{Name: "dave", Kind: KindClient, Groups: []string{"eng"}, Routes: []netip.Prefix{host(dave4)}}); err != nil {
				t.Errorf("add dave: %v", err)
			}
			r.Forget("dave")
			r.SetACL(ACLConfig{BuiltinDeny: []string{"drop", "reject"}[i%2]})
			_ = r.Stats()
			time.Sleep(100 * time.Microsecond)
		}
	}()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src, dst := aliceV4, hostA4
			if w%2 == 1 {
				src, dst = hostA6, aliceV6
			}
			orig := udpPacket(t, src, dst, 64, 200+w)
			bufs := make([][]byte, BatchSize)
			for i := range bufs {
				bufs[i] = withHeadroom(orig, wgOffset)
			}
			for range batches {
				for _, b := range bufs {
					copy(b[wgOffset:], orig)
				}
				r.Write(bufs, wgOffset)
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-ctlDone
	for r.ring.len() > 0 {
		time.Sleep(time.Millisecond)
	}
	r.Close()
	<-readerDone
	s := r.Stats()
	var in, dropped, icmp uint64
	for _, p := range s.Peers {
		in += p.RxPackets
		for _, d := range p.Drops {
			dropped += d
		}
	}
	icmp = s.ICMPErrors
	// Forwarded = in - dropped; ICMP errors are extra packets read.
	// While conn-a's routes are being replaced, its LAN hosts' packets
	// have an unowned source: spoofed, not counted as rx.
	if total := uint64(writers * batches * BatchSize); in+s.Unattributed[DropSpoofed] != total {
		t.Fatalf("rx %d + spoofed %d, want %d", in, s.Unattributed[DropSpoofed], total)
	}
	if got, want := uint64(read.Load()), in-dropped+icmp; got != want {
		t.Fatalf("read %d, want forwarded %d + ICMP %d = %d (stats %+v)", got, in-dropped, icmp, want, s)
	}
	t.Logf("read %d, dropped %d, icmp %d: %+v", read.Load(), dropped, icmp, s.Peers)
}

// checkGoroutines fails t if goroutines started during the test outlive it
// (like wireguard-go's goroutine leak check). Call it first thing: its
// cleanup then runs after every other.
func checkGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("%d goroutines leaked (%d before):\n%s", n-before, before, firstLines(string(buf), 80))
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}
