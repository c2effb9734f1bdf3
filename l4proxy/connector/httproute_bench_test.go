package connector_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l4proxy/edge"
	"github.com/onramp-net/onramp/l4proxy/edge/edgetest"
)

// benchRules: routed.example.test has a path rule, plain.example.test
// none; streams of both are served request by request (until issue 12,
// a host without path rules had its bytes copied raw after the first
// request). Both go to the same origin.
func benchRules(origin string) string {
	return fmt.Sprintf(`ingress:
  - {hostname: routed.example.test, path: /admin, service: "http_status:403"}
  - {hostname: routed.example.test, service: "http://%[1]s"}
  - {hostname: plain.example.test, service: "http://%[1]s"}
  - service: "http_status:404"
`, origin)
}

// bytesOrigin answers /?n=N with N bytes.
func bytesOrigin(b *testing.B) string {
	blob := make([]byte, 1<<20)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Length", strconv.Itoa(n))
		for n > 0 {
			k := min(n, len(blob))
			if _, err := w.Write(blob[:k]); err != nil {
				return
			}
			n -= k
		}
	}))
	b.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// BenchmarkHTTPKeepAlive: GET requests one after the other on one
// keep-alive connection through edge and connector (in this process), for
// a host without path rules (plain) and one with (routed). One op is one
// request and its response of size bytes; allocs/op counts the whole
// process.
func BenchmarkHTTPKeepAlive(b *testing.B) {
	for _, proto := range protos {
		for _, size := range []int{100, 1 << 20} {
			for _, host := range []string{"plain", "routed"} {
				b.Run(fmt.Sprintf("%s/%dB/%s", proto, size, host), func(b *testing.B) {
					e := edgetest.Start(b, proto, "127.0.0.1", edge.Options{})
					e.StartConnector(benchRules(bytesOrigin(b)), nil)
					e.Route(host + ".example.test")
					c, err := net.Dial("tcp", e.ServeHTTP())
					if err != nil {
						b.Fatal(err)
					}
					defer c.Close()
					br := bufio.NewReaderSize(c, 64<<10)
					req := []byte(fmt.Sprintf("GET /?n=%d HTTP/1.1\r\nHost: %s.example.test\r\n\r\n", size, host))
					get := func() {
						if _, err := c.Write(req); err != nil {
							b.Fatal(err)
						}
						resp, err := http.ReadResponse(br, nil)
						if err != nil {
							b.Fatal(err)
						}
						n, err := io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if err != nil || n != int64(size) || resp.StatusCode != 200 {
							b.Fatalf("GET: %d, %d bytes, %v", resp.StatusCode, n, err)
						}
					}
					get() // the stream is open, the origin connection too
					b.SetBytes(int64(size))
					b.ReportAllocs()
					b.ResetTimer()
					for range b.N {
						get()
					}
				})
			}
		}
	}
}

// BenchmarkHTTPHeld holds 500 keep-alive connections idle after one
// request each, for a host without path rules (plain) and one with
// (routed), and reports what each costs the edge, the connector and the
// origin together: heap and goroutine stacks in use, and goroutines. One
// op is the whole hold; run it with -benchtime 1x.
func BenchmarkHTTPHeld(b *testing.B) {
	const held = 500
	for _, proto := range protos {
		for _, host := range []string{"plain", "routed"} {
			b.Run(proto+"/"+host, func(b *testing.B) {
				e := edgetest.Start(b, proto, "127.0.0.1", edge.Options{MaxStreamsPerTunnel: 2 * held, MaxConnsPerSource: 2 * held})
				e.StartConnector(benchRules(bytesOrigin(b)), nil)
				e.Route(host + ".example.test")
				addr := e.ServeHTTP()
				req := []byte(fmt.Sprintf("GET /?n=10 HTTP/1.1\r\nHost: %s.example.test\r\n\r\n", host))
				for b.Loop() {
					runtime.GC()
					var before, after runtime.MemStats
					runtime.ReadMemStats(&before)
					g0 := runtime.NumGoroutine()
					conns := make([]net.Conn, 0, held)
					for range held {
						c, err := net.Dial("tcp", addr)
						if err != nil {
							b.Fatal(err)
						}
						conns = append(conns, c)
						c.SetDeadline(time.Now().Add(10 * time.Second))
						if _, err := c.Write(req); err != nil {
							b.Fatal(err)
						}
						resp, err := http.ReadResponse(bufio.NewReader(c), nil)
						if err != nil {
							b.Fatal(err)
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
					runtime.GC()
					runtime.ReadMemStats(&after)
					b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/held, "heap-B/conn")
					b.ReportMetric(float64(int64(after.StackInuse)-int64(before.StackInuse))/held, "stack-B/conn")
					b.ReportMetric(float64(runtime.NumGoroutine()-g0)/held, "goroutines/conn")
					for _, c := range conns {
						c.Close()
					}
				}
			})
		}
	}
}
