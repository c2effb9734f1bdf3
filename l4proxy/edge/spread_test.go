package edge

import (
	"context"
	"log/slog"
	"runtime"
	"testing"
)

// spreadFake is a connection the test can drain or kill.
type spreadFake struct {
	fakeConn
	ctx      context.Context
	draining bool
}

func (c *spreadFake) Context() context.Context { return c.ctx }
func (c *spreadFake) Draining() bool           { return c.draining }

// spreadRig is a server with StreamSpread spread and n connections of one
// tunnel, registered in order.
func spreadRig(t *testing.T, spread, n int) (*Server, *tunnelEntry, []*liveConn, []*spreadFake, []context.CancelFunc) {
	t.Helper()
	s := NewServer(Options{Logger: slog.New(slog.DiscardHandler), StreamSpread: spread})
	s.SetTunnels(map[string][16]byte{"t": {1}})
	var te *tunnelEntry
	lcs := make([]*liveConn, n)
	fakes := make([]*spreadFake, n)
	kills := make([]context.CancelFunc, n)
	for i := range n {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		fakes[i], kills[i] = &spreadFake{ctx: ctx}, cancel
		lcs[i] = &liveConn{conn: fakes[i]}
		te, _ = s.register(lcs[i])
	}
	return s, te, lcs, fakes, kills
}

// open picks k times as openStream does, counting a stream on each pick,
// and returns how many went to each connection.
func openK(s *Server, te *tunnelEntry, lcs []*liveConn, k int) []int {
	got := make([]int, len(lcs))
	for range k {
		lc := s.pick(te, nil)
		if lc == nil {
			continue
		}
		lc.streams.Add(1)
		for i := range lcs {
			if lcs[i] == lc {
				got[i]++
			}
		}
	}
	return got
}

func closeAll(lcs []*liveConn) {
	for _, lc := range lcs {
		lc.streams.Store(0)
	}
}

// TestStreamSpread: new streams go to the tunnel's first StreamSpread
// usable connections, evened out by open streams; the others stand by and
// take over, oldest first, when one of the spread drains, dies or goes
// quiet; -1 spreads over all of them; 0 is one per GOMAXPROCS while most
// of the tunnel's recent streams were small, and all of them otherwise.
func TestStreamSpread(t *testing.T) {
	t.Run("one", func(t *testing.T) {
		s, te, lcs, fakes, kills := spreadRig(t, 1, 4)
		if got := openK(s, te, lcs, 40); got[0] != 40 {
			t.Fatalf("spread 1: streams per connection %v, want all 40 on the oldest", got)
		}
		closeAll(lcs)
		fakes[0].draining = true
		if got := openK(s, te, lcs, 40); got[1] != 40 {
			t.Fatalf("oldest draining: streams per connection %v, want all on the next", got)
		}
		closeAll(lcs)
		kills[1]()
		lcs[2].quiet.Store(true)
		if got := openK(s, te, lcs, 40); got[3] != 40 {
			t.Fatalf("first draining, second dead, third quiet: streams per connection %v, want all on the fourth", got)
		}
		closeAll(lcs)
		lcs[3].quiet.Store(true)
		if got := openK(s, te, lcs, 40); got[2] != 40 {
			t.Fatalf("every usable one quiet: streams per connection %v, want all on the oldest quiet one", got)
		}
		closeAll(lcs)
		kills[2]()
		kills[3]()
		if lc := s.pick(te, nil); lc != nil {
			t.Fatal("picked a connection with none usable")
		}
	})
	t.Run("two", func(t *testing.T) {
		s, te, lcs, _, _ := spreadRig(t, 2, 4)
		if got := openK(s, te, lcs, 40); got[0] != 20 || got[1] != 20 {
			t.Fatalf("spread 2: streams per connection %v, want 20 and 20 on the two oldest", got)
		}
		// The fewest open streams wins inside the spread.
		lcs[0].streams.Store(0)
		if got := openK(s, te, lcs, 10); got[0] != 10 {
			t.Fatalf("after the first's streams closed: %v, want all 10 on it", got)
		}
	})
	t.Run("all", func(t *testing.T) {
		s, te, lcs, _, _ := spreadRig(t, -1, 4)
		if got := openK(s, te, lcs, 40); got[0] != 10 || got[1] != 10 || got[2] != 10 || got[3] != 10 {
			t.Fatalf("spread -1: streams per connection %v, want 10 each", got)
		}
		// tried is skipped.
		for range 20 {
			if lc := s.pick(te, lcs[:3]); lc != lcs[3] {
				t.Fatal("pick returned a connection already tried")
			}
		}
	})
	t.Run("default", func(t *testing.T) {
		s, te, lcs, _, _ := spreadRig(t, 0, 8)
		used := func() int {
			closeAll(lcs)
			n := 0
			for _, k := range openK(s, te, lcs, 80) {
				if k > 0 {
					n++
				}
			}
			return n
		}
		// A new tunnel has no small streams yet: all connections.
		if n := used(); n != 8 {
			t.Fatalf("spread 0, no stream yet: %d connections used, want all 8", n)
		}
		// Mostly small streams: one connection per core.
		for range 20 {
			te.noteStream(300)
		}
		if n, want := used(), min(runtime.GOMAXPROCS(0), 8); n != want {
			t.Fatalf("spread 0 after 20 small streams, GOMAXPROCS %d: %d connections used, want %d", runtime.GOMAXPROCS(0), n, want)
		}
		// A few bulk ones among them do not change that; mostly bulk does.
		te.noteStream(1 << 30)
		te.noteStream(1 << 30)
		if n, want := used(), min(runtime.GOMAXPROCS(0), 8); n != want {
			t.Fatalf("spread 0 after 2 bulk streams among small ones: %d connections used, want %d", n, want)
		}
		for range 20 {
			te.noteStream(64 << 20)
		}
		if n := used(); n != 8 {
			t.Fatalf("spread 0 after 20 bulk streams: %d connections used, want all 8", n)
		}
	})
}

// TestPickAllocs: picking a connection allocates nothing, also among more
// connections than any fixed array would hold.
func TestPickAllocs(t *testing.T) {
	s, te, _, _, _ := spreadRig(t, -1, 12)
	if n := testing.AllocsPerRun(100, func() { s.pick(te, nil) }); n != 0 {
		t.Fatalf("pick over 12 connections: %v allocations, want 0", n)
	}
}
