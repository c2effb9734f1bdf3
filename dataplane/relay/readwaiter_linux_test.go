package relay

import (
	"errors"
	"os"
	"testing"
	"time"
)

// TestReadWaiterOnePollPerWait: a socket's bufferless wait makes one
// ppoll whether the data is there or comes later (the poller's wake is
// not checked again), and ends with the read deadline; data that came is
// then read whole.
func TestReadWaiterOnePollPerWait(t *testing.T) {
	user, edge := tcpPair(t)
	w := NewReadWaiter(rawConn(edge))
	polls := 0
	w.readable = func(fd uintptr) bool { polls++; return Readable(fd) }
	// The data comes while it waits.
	time.AfterFunc(30*time.Millisecond, func() { user.Write([]byte("later")) })
	if err := w.Wait(); err != nil {
		t.Fatal(err)
	}
	if polls != 1 {
		t.Errorf("a wait for data that came later: %d ppolls, want 1", polls)
	}
	// The data is there: the ppoll finds it.
	polls = 0
	if err := w.Wait(); err != nil {
		t.Fatal(err)
	}
	if polls != 1 {
		t.Errorf("a wait for data that is there: %d ppolls, want 1", polls)
	}
	buf := make([]byte, 16)
	if n, err := edge.Read(buf); err != nil || string(buf[:n]) != "later" {
		t.Fatalf("read %q, %v after the waits; want \"later\"", buf[:n], err)
	}
	// Nothing comes: the deadline ends the wait.
	polls = 0
	edge.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	if err := w.Wait(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a wait past the read deadline: %v, want the deadline", err)
	}
	if polls != 1 {
		t.Errorf("a wait that timed out: %d ppolls, want 1", polls)
	}
}
