package relay

import (
	"io"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestPipePoolDiscardsNonEmpty: a pipe given back with bytes still in it
// (its user thought it drained) is closed, not handed to the next relay
// with another connection's bytes; an empty one is kept.
func TestPipePoolDiscardsNonEmpty(t *testing.T) {
	pp := newPipePool(64<<10, 4)
	defer pp.close()
	p := pp.get()
	if p == nil {
		t.Fatal("no pipe")
	}
	if _, err := unix.Write(p.w, []byte("someone else's bytes")); err != nil {
		t.Fatal(err)
	}
	pp.put(p)
	if st := pp.stats(); st.PipesIdle != 0 || st.PipesInUse != 0 {
		t.Fatalf("after putting back a pipe with bytes in it: %+v, want it closed", st)
	}
	if q := pp.get(); q == p {
		t.Fatal("the pool handed out the pipe with bytes in it again")
	} else {
		if n := q.buffered(); n != 0 {
			t.Fatalf("a new pipe holds %d bytes", n)
		}
		pp.put(q)
	}
	if st := pp.stats(); st.PipesIdle != 1 {
		t.Fatalf("after putting back an empty pipe: %+v, want it kept", st)
	}
}

// TestSpliceWaitPipeComesBack: a direction's wait that began with no pipe
// free (the pool at its cap) and ends after another relay gave one back
// splices into that pipe, and says so: its pass must pump the pipe, not
// copy past it (which left a pipe's worth of bytes behind, and the pipe
// back in the pool with them).
func TestSpliceWaitPipeComesBack(t *testing.T) {
	pp := newPipePool(64<<10, 1)
	defer pp.close()
	client, a := tcpPair(t)
	defer client.Close()
	defer a.Close()
	rc := rawConn(a)
	var fd uintptr
	if err := rc.Control(func(f uintptr) { fd = f }); err != nil {
		t.Fatal(err)
	}
	d := &adir{}
	d.sp.pool = pp
	other := pp.get() // another relay holds the only pipe
	if d.spliceWait(fd) || !d.noPipe {
		t.Fatalf("a quiet socket with no pipe free: noPipe=%v, want a wait without a pipe", d.noPipe)
	}
	pp.put(other)
	if _, err := client.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	var ready bool
	for range 1000 { // until the bytes are in a's receive queue
		if ready = d.spliceWait(fd); ready {
			break
		}
	}
	if !ready || d.noPipe || d.sp.p == nil || d.sp.in != 5 {
		t.Fatalf("after the pipe came back: ready=%v noPipe=%v pipe=%v in=%d, want 5 bytes spliced into it",
			ready, d.noPipe, d.sp.p != nil, d.sp.in)
	}
}

// TestParkedWakesWithoutPipe parks a relay's direction, gives the only
// pipe to another relay (whose reader stalls, so it keeps it) and then
// speaks on the parked one: it wakes with no pipe to take, and must copy
// the bytes through, not fail on the read deadline its linger left
// behind.
func TestParkedWakesWithoutPipe(t *testing.T) {
	e, err := New(Config{Strategy: Splice, MaxPipes: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	x := startRelay(t, e, Options{})
	one := make([]byte, 1)
	x.client.Write([]byte("a"))
	x.server.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(x.server, one); err != nil {
		t.Fatal(err)
	}
	waitStats(t, e, func(st Stats) bool { return st.Parked == 2 }, "both directions of the quiet relay parked")
	// The other relay's reader does not read: its direction holds the
	// pipe, waiting for the destination to take more.
	y := startRelay(t, e, Options{})
	go stream(y.client, 64<<20, 7)
	waitStats(t, e, func(st Stats) bool { return st.PipesInUse == 1 }, "the stalled relay holds the only pipe")
	for i := range 3 {
		msg := []byte{'b' + byte(i)}
		if _, err := x.client.Write(msg); err != nil {
			t.Fatal(err)
		}
		x.server.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(x.server, one); err != nil || one[0] != msg[0] {
			t.Fatalf("message %d through the woken relay: %q, %v", i, one, err)
		}
		time.Sleep(2 * lingerFor) // quiet again: it parks, or waits without a pipe
	}
	if st := e.Stats(); st.PipeFallbacks == 0 {
		t.Errorf("%+v: the woken direction found a pipe; the test did not take the path it is for", st)
	}
}

func waitStats(t *testing.T, e *Engine, ok func(Stats) bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(e.Stats()); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s (%+v)", what, e.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
