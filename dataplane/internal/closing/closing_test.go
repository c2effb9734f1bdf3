package closing

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestGuard: Close waits for a use in progress, runs once, and a use
// after it is refused; uses and a Close racing leave no use running on
// a closed object (run with -race).
func TestGuard(t *testing.T) {
	var g Guard
	if !g.Use() {
		t.Fatal("a new guard refused a use")
	}
	closed := make(chan error, 1)
	var ran atomic.Int32
	go func() { closed <- g.Close(func() error { ran.Add(1); return errors.New("x") }) }()
	select {
	case <-closed:
		t.Fatal("Close did not wait for the use in progress")
	case <-time.After(50 * time.Millisecond):
	}
	g.Done()
	if err := <-closed; err == nil || err.Error() != "x" {
		t.Fatalf("Close returned %v, want f's error", err)
	}
	if g.Use() {
		t.Fatal("a use after Close was allowed")
	}
	if err := g.Close(func() error { ran.Add(1); return nil }); err != nil || ran.Load() != 1 {
		t.Fatalf("second Close: %v, f ran %d times", err, ran.Load())
	}

	var h Guard
	var open atomic.Bool
	open.Store(true)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				if h.Use() {
					if !open.Load() {
						t.Error("a use saw the object closed")
					}
					h.Done()
				}
			}
		}()
	}
	_ = h.Close(func() error { open.Store(false); return nil })
	wg.Wait()
}
