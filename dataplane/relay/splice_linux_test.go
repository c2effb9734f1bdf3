package relay

import (
	"testing"

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
