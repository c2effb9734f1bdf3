package relay

import (
	"context"
	"runtime"
	"testing"
)

// relayMallocs relays n bytes one way through a fresh relay of e and
// returns the heap allocations the process made meanwhile. The client
// and server loops allocate nothing per chunk.
func relayMallocs(t *testing.T, e *Engine, n int64) uint64 {
	client, a := tcpPair(t)
	b, server := tcpPair(t)
	defer client.Close()
	defer server.Close()
	buf := make([]byte, 64<<10)
	rbuf := make([]byte, 64<<10)
	done := make(chan struct{})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	go func() {
		defer close(done)
		for {
			if _, err := server.Read(rbuf); err != nil {
				return
			}
		}
	}()
	go func() {
		for sent := int64(0); sent < n; sent += int64(len(buf)) {
			if _, err := client.Write(buf); err != nil {
				return
			}
		}
		client.CloseWrite()
	}()
	go func() {
		e.Relay(context.Background(), a, b, Options{})
	}()
	<-done
	runtime.ReadMemStats(&after)
	return after.Mallocs - before.Mallocs
}

// TestNoAllocationsPerByte: the splice and copy loops allocate per
// connection, never per chunk: relaying 256 MiB allocates no more than
// relaying 8 MiB, give or take the runtime's own (timers, GC).
func TestNoAllocationsPerByte(t *testing.T) {
	for _, s := range []Strategy{Splice, Copy} {
		t.Run(s.String(), func(t *testing.T) {
			e, err := New(Config{Strategy: s})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			relayMallocs(t, e, 8<<20) // warm the pools
			small := relayMallocs(t, e, 8<<20)
			big := relayMallocs(t, e, 256<<20)
			t.Logf("%s: %d allocations for 8 MiB, %d for 256 MiB (%d chunks of 64 KiB more)", s, small, big, (256-8)<<4)
			if big > small+200 {
				t.Errorf("%s allocates per chunk: %d allocations for 8 MiB, %d for 256 MiB", s, small, big)
			}
		})
	}
}
