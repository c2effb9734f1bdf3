package sockio

import (
	"testing"
	"time"
)

// TestParkerWakes: a parked socket costs no goroutine until it becomes
// readable; then wake runs once per Park, for data and for EOF alike, and
// Unpark takes a parked socket back so that no wake runs for it.
func TestParkerWakes(t *testing.T) {
	p, err := NewPoller()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a, b := tcpPair(t)
	woke := make(chan struct{}, 4)
	k := p.NewParker(RawConn(b), func() { woke <- struct{}{} })
	expectWake := func(when string) {
		t.Helper()
		select {
		case <-woke:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no wake", when)
		}
		if p.Parked() != 0 {
			t.Fatalf("%s: %d parked after the wake, want 0", when, p.Parked())
		}
	}
	noWake := func(when string) {
		t.Helper()
		select {
		case <-woke:
			t.Fatalf("%s: a wake", when)
		case <-time.After(50 * time.Millisecond):
		}
	}

	if err := k.Park(); err != nil {
		t.Fatal(err)
	}
	if p.Parked() != 1 {
		t.Fatalf("%d parked, want 1", p.Parked())
	}
	noWake("quiet")
	a.Write([]byte("x"))
	expectWake("data")

	// One-shot: the byte is still unread, so parking again wakes at once.
	if err := k.Park(); err != nil {
		t.Fatal(err)
	}
	expectWake("unread data")
	buf := make([]byte, 1)
	if _, err := b.Read(buf); err != nil {
		t.Fatal(err)
	}

	if err := k.Park(); err != nil {
		t.Fatal(err)
	}
	if !k.Unpark() || k.Unpark() {
		t.Fatal("Unpark of a parked socket: want true once, then false")
	}
	a.Write([]byte("y"))
	noWake("unparked")
	b.Read(buf)

	if err := k.Park(); err != nil {
		t.Fatal(err)
	}
	a.Close()
	expectWake("EOF")

	b.Close()
	if err := k.Park(); err == nil {
		t.Fatal("Park of a closed socket: no error")
	}
	if p.Parked() != 0 {
		t.Fatalf("a failed Park left %d parked", p.Parked())
	}
}
