//go:build linux

package wg

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// crossLoopSender is a peer of an edge device whose session sends with
// key 1 to receiver index idx, as the edge's session with a connector or
// a client does.
func crossLoopSender(t *testing.T, idx uint32) (*Peer, *keypair) {
	t.Helper()
	d, err := New(Config{PrivateKey: newKey(t), Router: testRouter(t), Loops: 1, Logger: testLogger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	p, err := d.AddPeer("site", newKey(t).PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	var k [32]byte
	for i := range k {
		k[i] = 1
	}
	kp := &keypair{peer: p, created: d.now(), send: newAEAD(&k), remoteIndex: idx}
	p.current.Store(kp)
	p.SetEndpoint(sink(t))
	return p, kp
}

// sealAcrossLoops has loops goroutines seal n copies of pkt for p at once,
// as the edge's loops do with one session's shared send counter, each in
// batches of batch messages (what one loop holds until its sender
// flushes). It returns the batches, each in its loop's order.
func sealAcrossLoops(t *testing.T, p *Peer, pkt []byte, n, loops, batch int) [][][]byte {
	t.Helper()
	now := p.dev.now()
	out := make([][][][]byte, loops)
	var wg sync.WaitGroup
	for g := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var nonce [12]byte
			var cur [][]byte
			for i := g; i < n; i += loops {
				pad := padded(len(pkt), 1420)
				msg := make([]byte, sizeTransportHdr+pad+sizeTag)
				copy(msg[sizeTransportHdr:], pkt)
				m, _, ok := p.seal(msg, pad, now, &nonce)
				if !ok {
					t.Error("no session to seal with")
					return
				}
				if cur = append(cur, m); len(cur) == batch {
					out[g] = append(out[g], cur)
					cur = nil
				}
			}
			if len(cur) > 0 {
				out[g] = append(out[g], cur)
			}
		}()
	}
	wg.Wait()
	var all [][][]byte
	for _, bs := range out {
		all = append(all, bs...)
	}
	return all
}

func counterOf(msg []byte) uint64 { return binary.LittleEndian.Uint64(msg[8:16]) }

// TestReorderAcrossLoops: the edge's loops share a session's send counter,
// so the messages they send to one peer arrive reordered by up to their
// batches. 5,000 messages sealed by 8 goroutines in batches of 64 and
// delivered batch by batch in random order (then all in reverse, the
// greatest counter first) are all accepted, by a connector (a TUN device)
// and by the edge (a router device); a message delivered again is
// refused, and so is a message never delivered whose counter has fallen
// behind the window.
func TestReorderAcrossLoops(t *testing.T) {
	const n, loops, batch = 5000, 8, 64
	pkt := udp(t, clientIP, hostIP, "reordered")
	type receiver struct {
		window   uint64
		deliver  func(msg []byte)
		accepted func() uint64
	}
	receivers := map[string]func(t *testing.T) (receiver, uint32){
		"connector": func(t *testing.T) (receiver, uint32) {
			d, nt, _, kp := tunRig(t)
			l := &loop{d: d, arena: make([]byte, arenaSize)}
			l.initTUN()
			src := kp.peer.endpoint.Load()
			return receiver{
				window: replayWindowOf(replayBlocksTUN),
				deliver: func(msg []byte) {
					l.cValid, l.used = false, 0
					l.transport(bytes.Clone(msg), src.AddrPort, d.now())
					l.flush()
				},
				accepted: func() uint64 { return nt.written.Load() },
			}, kp.local
		},
		"edge": func(t *testing.T) (receiver, uint32) {
			d, l, kc, src := benchRig(t)
			return receiver{
				window: replayWindowOf(replayBlocksRouter),
				deliver: func(msg []byte) {
					l.cValid, l.used = false, 0
					l.transport(bytes.Clone(msg), src, d.now())
					l.flush()
				},
				accepted: func() uint64 { return d.router.Stats().Peers["site"].TxPackets },
			}, kc.local
		},
	}
	for name, mk := range receivers {
		for _, order := range []string{"batches shuffled", "reversed"} {
			t.Run(name+"/"+order, func(t *testing.T) {
				r, idx := mk(t)
				p, skp := crossLoopSender(t, idx)
				batches := sealAcrossLoops(t, p, pkt, n, loops, batch)
				var msgs [][]byte
				switch order {
				case "batches shuffled":
					rng := rand.New(rand.NewPCG(13, 2))
					rng.Shuffle(len(batches), func(i, j int) { batches[i], batches[j] = batches[j], batches[i] })
					for _, b := range batches {
						msgs = append(msgs, b...)
					}
				case "reversed":
					for _, b := range batches {
						msgs = append(msgs, b...)
					}
					// Greatest counter first.
					slices.SortFunc(msgs, func(a, b []byte) int { return cmp.Compare(counterOf(b), counterOf(a)) })
				}
				var spread uint64 // how far behind the greatest counter so far a message came
				var greatest uint64
				for i, m := range msgs {
					c := counterOf(m)
					if i > 0 && c < greatest {
						spread = max(spread, greatest-c)
					}
					greatest = max(greatest, c)
					r.deliver(m)
				}
				if got := r.accepted(); got != n {
					t.Fatalf("%d of %d reordered messages accepted (counters up to %d behind the greatest)", got, n, spread)
				}
				t.Logf("%d messages from %d loops accepted, arriving up to %d counters behind the greatest", n, loops, spread)

				// A true replay: refused.
				r.deliver(msgs[len(msgs)/2])
				if got := r.accepted(); got != n {
					t.Fatalf("a replayed message was accepted")
				}
				// A message never delivered, whose counter has fallen
				// behind the window: refused.
				old := sealAcrossLoops(t, p, pkt, 1, 1, 1)[0][0]
				skp.sendCtr.Store(counterOf(old) + r.window + 1)
				r.deliver(sealAcrossLoops(t, p, pkt, 1, 1, 1)[0][0])
				if got := r.accepted(); got != n+1 {
					t.Fatalf("the message ahead of the window: %d accepted, want %d", got, n+1)
				}
				r.deliver(old)
				if got := r.accepted(); got != n+1 {
					t.Fatalf("a message %d counters behind the greatest (window %d) was accepted", r.window+1, r.window)
				}
				// One just inside the window still is accepted.
				skp.sendCtr.Store(counterOf(old) + 1)
				r.deliver(sealAcrossLoops(t, p, pkt, 1, 1, 1)[0][0])
				if got := r.accepted(); got != n+2 {
					t.Fatalf("a new message %d counters behind the greatest (window %d) was refused", r.window, r.window)
				}
			})
		}
	}
}

func replayWindowOf(blocks int) uint64 { return uint64(blocks-1) * 64 }
