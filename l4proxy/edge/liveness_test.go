package edge

import (
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// liveFake is a connection whose peer's signs of life the test sets.
type liveFake struct {
	fakeConn
	recv atomic.Uint64
	rtt  atomic.Int64
}

func (c *liveFake) Received() uint64 { return c.recv.Load() }
func (c *liveFake) SmoothedRTT() time.Duration {
	return time.Duration(c.rtt.Load())
}
func (c *liveFake) ConnectorID() [16]byte { return [16]byte{2} }
func (c *liveFake) Protocol() string      { return "quic" }
func (c *liveFake) RemoteAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(198, 18, 0, 2), Port: 4000}
}

// TestQuietConnectionsAvoided plays a connector replica that dies: its
// connection stops receiving. After QuietAfter the edge's sampler marks it
// quiet and pick sends every new stream to the live connection, however
// few streams the quiet one carries; heard from again, it takes streams
// again; when every connection is quiet, pick still picks one.
func TestQuietConnectionsAvoided(t *testing.T) {
	s := NewServer(Options{Logger: slog.New(slog.DiscardHandler), QuietAfter: time.Second, StreamSpread: -1})
	s.SetTunnels(map[string][16]byte{"t": {1}})
	dead, live := &liveFake{}, &liveFake{}
	lcDead, lcLive := &liveConn{conn: dead}, &liveConn{conn: live}
	te, _ := s.register(lcDead)
	s.register(lcLive)
	lcLive.streams.Store(50) // the busier one: fewest-streams alone would pick the dead one

	now := time.Unix(1000, 0)
	tick := func(d time.Duration) {
		now = now.Add(d)
		live.recv.Add(1) // the live connector answers keep-alives
		s.sampleLiveness(now)
	}
	tick(0)
	if got := s.pick(te, nil); got != lcDead {
		t.Fatal("before any silence, the connection with fewer streams is not picked")
	}
	tick(500 * time.Millisecond)
	if lcDead.quiet.Load() {
		t.Fatal("quiet after 500ms, before QuietAfter")
	}
	tick(600 * time.Millisecond)
	if !lcDead.quiet.Load() || lcLive.quiet.Load() {
		t.Fatalf("after 1.1s of silence: dead quiet %v, live quiet %v", lcDead.quiet.Load(), lcLive.quiet.Load())
	}
	for range 10 {
		if got := s.pick(te, nil); got != lcLive {
			t.Fatal("a new stream went to the silent connection")
		}
	}
	// Every connection quiet: pick one anyway (the network may be slow).
	now = now.Add(2 * time.Second)
	s.sampleLiveness(now)
	if got := s.pick(te, nil); got != lcDead {
		t.Fatal("with every connection quiet, pick returns none or not the least loaded")
	}
	// Heard from again: it takes streams.
	dead.recv.Add(1)
	tick(200 * time.Millisecond)
	if lcDead.quiet.Load() || s.pick(te, nil) != lcDead {
		t.Fatal("a connection heard from again is still avoided")
	}
	// A far connector (300 ms away) is given three round trips more.
	dead.rtt.Store(int64(300 * time.Millisecond))
	tick(1500 * time.Millisecond)
	if lcDead.quiet.Load() {
		t.Fatal("a connection 300 ms away quiet after 1.5s")
	}
	tick(500 * time.Millisecond)
	if !lcDead.quiet.Load() {
		t.Fatal("a connection 300 ms away not quiet after 2s (1s + 3 round trips)")
	}
}
