package edge_test

import (
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l4proxy/edge"
	"github.com/onramp-net/onramp/l4proxy/edge/edgetest"
)

// heldStreams is how many connections BenchmarkStreamsHeld holds open.
const heldStreams = 1000

// BenchmarkStreamsHeld holds 1000 proxied connections open through the
// tunnel (edge and connector in this process), a tenth of them echoing
// 64 bytes now and then, and reports what each costs the edge and the
// connector together: heap and goroutine stacks in use, and goroutines.
// The same figures for as many connections made straight to the origin
// are subtracted, so the users' sockets and the origin's own goroutines
// do not count. One op is the whole hold; run it with -benchtime 1x.
// ONRAMP_HEAP_PROFILE=file writes a heap profile while the streams are held.
func BenchmarkStreamsHeld(b *testing.B) {
	for _, proto := range protos {
		b.Run(proto, func(b *testing.B) {
			origin := edgetest.ServeTCPOrigin(b, "127.0.0.1", smallEcho)
			e := edgetest.Start(b, proto, "127.0.0.1", edge.Options{MaxStreamsPerTunnel: 2 * heldStreams, MaxConnsPerSource: 2 * heldStreams})
			e.StartConnector(fmt.Sprintf("ingress:\n  - service: tcp://%s\n", origin), nil)
			addr := e.ServeTCP("echo")
			for b.Loop() {
				direct := holdStreams(b, origin, "", nil)
				tunnel := holdStreams(b, addr, proto, nil)
				b.ReportMetric(tunnel.heap-direct.heap, "heap-B/stream")
				b.ReportMetric(tunnel.stack-direct.stack, "stack-B/stream")
				b.ReportMetric(tunnel.goroutines-direct.goroutines, "goroutines/stream")
			}
		})
	}
}

// BenchmarkHTTPStreamsHeld is BenchmarkStreamsHeld through the HTTP
// listener: each connection sends a request head first (routed by its
// Host, proxied raw to an echo origin), so the figures include what the
// edge keeps of the head while the connection lives.
func BenchmarkHTTPStreamsHeld(b *testing.B) {
	head := []byte("GET /held HTTP/1.1\r\nHost: held.test\r\nUser-Agent: bench\r\n\r\n")
	for _, proto := range protos {
		b.Run(proto, func(b *testing.B) {
			origin := edgetest.ServeTCPOrigin(b, "127.0.0.1", smallEcho)
			e := edgetest.Start(b, proto, "127.0.0.1", edge.Options{MaxStreamsPerTunnel: 2 * heldStreams, MaxConnsPerSource: 2 * heldStreams})
			e.StartConnector(fmt.Sprintf("ingress:\n  - {hostname: held.test, service: \"http://%s\"}\n  - service: \"http_status:404\"\n", origin), nil)
			e.Route("held.test")
			addr := e.ServeHTTP()
			for b.Loop() {
				direct := holdStreams(b, origin, "", head)
				tunnel := holdStreams(b, addr, proto, head)
				b.ReportMetric(tunnel.heap-direct.heap, "heap-B/stream")
				b.ReportMetric(tunnel.stack-direct.stack, "stack-B/stream")
				b.ReportMetric(tunnel.goroutines-direct.goroutines, "goroutines/stream")
			}
		})
	}
}

// smallEcho echoes with a small buffer, so that the origin costs little
// next to the tunnel.
func smallEcho(c net.Conn) {
	var buf [512]byte
	for {
		n, err := c.Read(buf[:])
		if n > 0 {
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// perStream is what each held connection costs, relative to before.
type perStream struct{ heap, stack, goroutines float64 }

// holdStreams opens heldStreams connections to addr, sends hello (if not
// nil) and reads its echo, echoes once on each,
// keeps a tenth echoing for a while and returns the heap bytes, stack
// bytes and goroutines per connection while they are held (after a GC).
// With profile set and ONRAMP_HEAP_PROFILE too, it writes a heap profile
// to profile-$ONRAMP_HEAP_PROFILE meanwhile.
func holdStreams(b *testing.B, addr, profile string, hello []byte) perStream {
	runtime.GC()
	var before, held runtime.MemStats
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()
	conns := make([]net.Conn, 0, heldStreams)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	msg := make([]byte, 64)
	reply := make([]byte, 64)
	echo := func(c net.Conn) error {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(msg); err != nil {
			return err
		}
		_, err := io.ReadFull(c, reply)
		return err
	}
	for range heldStreams {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		if hello != nil {
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(hello); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(c, make([]byte, len(hello))); err != nil {
				b.Fatal(err)
			}
		}
		if err := echo(c); err != nil {
			b.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for _, c := range conns[:heldStreams/10] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				if err := echo(c); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	runtime.GC()
	runtime.ReadMemStats(&held)
	gs := runtime.NumGoroutine() - g0
	if path := os.Getenv("ONRAMP_HEAP_PROFILE"); path != "" && profile != "" {
		f, err := os.Create(profile + "-" + path)
		if err != nil {
			b.Fatal(err)
		}
		pprof.Lookup("heap").WriteTo(f, 0)
		f.Close()
	}
	n := float64(len(conns))
	return perStream{
		heap:       float64(int64(held.HeapInuse)-int64(before.HeapInuse)) / n,
		stack:      float64(int64(held.StackInuse)-int64(before.StackInuse)) / n,
		goroutines: float64(gs) / n,
	}
}
