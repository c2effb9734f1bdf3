package edge_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
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
				direct := holdStreams(b, origin, "", echoExchange)
				tunnel := holdStreams(b, addr, proto, echoExchange)
				reportHeld(b, direct, tunnel)
			}
		})
	}
}

// BenchmarkHTTPStreamsHeld is BenchmarkStreamsHeld through the HTTP
// listener: each connection is a keep-alive HTTP/1.1 connection routed by
// its Host, whose requests the connector serves one by one, so the
// figures include what the edge keeps of the head and what the connector
// keeps per routed connection between requests.
func BenchmarkHTTPStreamsHeld(b *testing.B) {
	for _, proto := range protos {
		b.Run(proto, func(b *testing.B) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				io.WriteString(w, "held")
			}))
			b.Cleanup(srv.Close)
			origin := srv.Listener.Addr().String()
			e := edgetest.Start(b, proto, "127.0.0.1", edge.Options{MaxStreamsPerTunnel: 2 * heldStreams, MaxConnsPerSource: 2 * heldStreams})
			e.StartConnector(fmt.Sprintf("ingress:\n  - {hostname: held.test, service: \"http://%s\"}\n  - service: \"http_status:404\"\n", origin), nil)
			e.Route("held.test")
			addr := e.ServeHTTP()
			for b.Loop() {
				direct := holdStreams(b, origin, "", httpExchange)
				tunnel := holdStreams(b, addr, proto, httpExchange)
				reportHeld(b, direct, tunnel)
			}
		})
	}
}

func reportHeld(b *testing.B, direct, tunnel perStream) {
	b.ReportMetric(tunnel.heap-direct.heap, "heap-B/stream")
	b.ReportMetric(tunnel.stack-direct.stack, "stack-B/stream")
	b.ReportMetric(tunnel.goroutines-direct.goroutines, "goroutines/stream")
}

// echoExchange makes the exchange of c: 64 bytes echoed.
func echoExchange(c net.Conn) func() error {
	msg, reply := make([]byte, 64), make([]byte, 64)
	return func() error {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(msg); err != nil {
			return err
		}
		_, err := io.ReadFull(c, reply)
		return err
	}
}

// httpExchange makes the exchange of c: one GET answered on the
// keep-alive connection.
func httpExchange(c net.Conn) func() error {
	br := bufio.NewReader(c)
	return func() error {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET /held HTTP/1.1\r\nHost: held.test\r\nUser-Agent: bench\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %s", resp.Status)
		}
		return err
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

// holdStreams opens heldStreams connections to addr, makes one exchange
// (see echoExchange) on each, keeps a tenth exchanging for a while and
// returns the heap bytes, stack bytes and goroutines per connection while
// they are held, quiet for 2.5 s (after a GC). With profile set and ONRAMP_HEAP_PROFILE too,
// it writes a heap profile to profile-$ONRAMP_HEAP_PROFILE meanwhile.
func holdStreams(b *testing.B, addr, profile string, exchange func(net.Conn) func() error) perStream {
	runtime.GC()
	var before, held runtime.MemStats
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()
	conns := make([]net.Conn, 0, heldStreams)
	exchanges := make([]func() error, 0, heldStreams)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range heldStreams {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		ex := exchange(c)
		exchanges = append(exchanges, ex)
		if err := ex(); err != nil {
			b.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for _, ex := range exchanges[:heldStreams/10] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				if err := ex(); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	// Held: quiet for longer than a quiet QUIC stream's direction takes
	// to move to a fresh goroutine (l4proxy/internal/pipe: 1 to 2 s).
	time.Sleep(2500 * time.Millisecond)
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
