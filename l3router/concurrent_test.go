package l3router

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrent runs four routing goroutines (the device's loops, which
// call Route at once) while another changes routes, peers and the ACL,
// and checks that every packet is accounted for: forwarded, answered with
// an ICMP error, or dropped by a reason, and that each forwarded packet
// went to the peer owning its destination with its TTL lowered by one.
func TestConcurrent(t *testing.T) {
	r := newTestRouter(t, nil)
	attachAll(t, r)
	const loops, packets = 4, 20000
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
			// A client comes and goes: its slot is reused while
			// packets are routed.
			if err := r.AddPeer(PeerConfig{Name: "dave", Kind: KindClient, Groups: []string{"eng"}, Routes: []netip.Prefix{host(dave4)}}); err != nil {
				t.Errorf("add dave: %v", err)
			}
			r.Attach("dave", PeerID("dave"))
			r.Forget("dave")
			r.SetACL(ACLConfig{BuiltinDeny: []string{"drop", "reject"}[i%2]})
			_ = r.Stats()
			time.Sleep(100 * time.Microsecond)
		}
	}()
	var forwarded, replies atomic.Uint64
	var wg sync.WaitGroup
	for w := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Alice to the LAN and the LAN to alice, and alice to bob
			// (denied by the default policy: dropped or rejected).
			src, dst, from, to := aliceV4, hostA4, PeerID("alice"), PeerID("conn-a")
			switch w % 3 {
			case 1:
				src, dst, from, to = hostA6, aliceV6, "conn-a", "alice"
			case 2:
				dst, to = bobV4, "bob"
			}
			orig := udpPacket(t, src, dst, 64, 200+w)
			p := make([]byte, len(orig))
			reply := make([]byte, 1500)
			var d Decision
			for range packets {
				copy(p, orig)
				r.Route(p, from, &d)
				switch d.Action {
				case ActForward:
					if d.To != to || d.Len != len(orig) || p[0]>>4 == 4 && p[8] != 63 || p[0]>>4 == 6 && p[7] != 63 {
						t.Errorf("forwarded %x to %v, want it to %v with its TTL lowered", p[:20], d.To, to)
						return
					}
					forwarded.Add(1)
				case ActReply:
					if n := r.PutReply(reply, &d); n == 0 {
						t.Error("an ICMP error decided but not made")
						return
					}
					replies.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-ctlDone
	s := r.Stats()
	var in, dropped uint64
	for _, p := range s.Peers {
		in += p.RxPackets
		for _, d := range p.Drops {
			dropped += d
		}
	}
	// While conn-a's routes are being replaced, its LAN hosts' packets
	// have a source nobody owns: spoofed, not counted as received.
	if total := uint64(loops * packets); in+s.Unattributed[DropSpoofed] != total {
		t.Fatalf("received %d + spoofed %d, want %d", in, s.Unattributed[DropSpoofed], total)
	}
	if got, want := forwarded.Load(), in-dropped; got != want {
		t.Fatalf("forwarded %d, want received %d - dropped %d = %d (stats %+v)", got, in, dropped, want, s)
	}
	if replies.Load() != s.ICMPErrors {
		t.Fatalf("%d ICMP errors made, counted %d", replies.Load(), s.ICMPErrors)
	}
	t.Logf("forwarded %d, dropped %d, ICMP errors %d: %+v", forwarded.Load(), dropped, s.ICMPErrors, s.Peers)
}
