package edge_test

import (
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l4proxy/edge"
	"github.com/onramp-net/onramp/l4proxy/edge/edgetest"
)

// BenchmarkTunnelBulk moves one TCP stream through a port binding, the
// tunnel and the connector to an origin, all in this process on
// loopback: "up" from the user to a discarding origin, "down" from a
// sending origin to the user. One op is 256 KiB written by the sender.
// Besides MB/s it reports the CPU time of the whole process per GB (user,
// origin and the kernel's TCP work included): pinned to one CPU (taskset
// -c 1 go test -bench TunnelBulk), that is the figure that bounds an edge
// and a connector sharing a CPU, as in make bench, and it varies less
// with other load than wall time.
func BenchmarkTunnelBulk(b *testing.B) {
	const chunk = 256 << 10
	for _, proto := range protos {
		for _, dir := range []string{"up", "down"} {
			b.Run(proto+"/"+dir, func(b *testing.B) {
				e := edgetest.Start(b, proto, "127.0.0.1", edge.Options{})
				done := make(chan int64, 1)
				start := make(chan int, 1)
				origin := edgetest.ServeTCPOrigin(b, "127.0.0.1", func(c net.Conn) {
					if dir == "up" {
						n, _ := io.CopyBuffer(io.Discard, onlyReader{c}, make([]byte, chunk))
						done <- n
						return
					}
					buf := make([]byte, chunk)
					for range <-start {
						if _, err := c.Write(buf); err != nil {
							return
						}
					}
					c.(*net.TCPConn).CloseWrite()
				})
				e.StartConnector(fmt.Sprintf("ingress:\n  - service: tcp://%s\n", origin), nil)
				c, err := net.Dial("tcp", e.ServeTCP("bulk"))
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				b.SetBytes(chunk)
				b.ReportAllocs()
				cpu0 := processCPU()
				b.ResetTimer()
				if dir == "up" {
					buf := make([]byte, chunk)
					for range b.N {
						if _, err := c.Write(buf); err != nil {
							b.Fatal(err)
						}
					}
					c.(*net.TCPConn).CloseWrite()
					if n := <-done; n != int64(b.N)*chunk {
						b.Fatalf("origin got %d bytes, want %d", n, int64(b.N)*chunk)
					}
				} else {
					start <- b.N
					n, _ := io.CopyBuffer(io.Discard, onlyReader{c}, make([]byte, chunk))
					if n != int64(b.N)*chunk {
						b.Fatalf("user got %d bytes, want %d", n, int64(b.N)*chunk)
					}
				}
				b.StopTimer()
				b.ReportMetric((processCPU()-cpu0).Seconds()/(float64(b.N)*chunk/1e9), "cpu-s/GB")
			})
		}
	}
}

// BenchmarkTunnelBulkStreams is BenchmarkTunnelBulk "up" with 1 or 8
// streams at once over one tunnel connection, each stream writing its
// share of the ops: with the CPU per GB of the whole process it shows what
// more streams cost per byte (pin it to one CPU as BenchmarkTunnelBulk).
func BenchmarkTunnelBulkStreams(b *testing.B) {
	const chunk = 256 << 10
	for _, proto := range protos {
		for _, streams := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/%d", proto, streams), func(b *testing.B) {
				e := edgetest.Start(b, proto, "127.0.0.1", edge.Options{})
				done := make(chan int64, streams)
				origin := edgetest.ServeTCPOrigin(b, "127.0.0.1", func(c net.Conn) {
					n, _ := io.CopyBuffer(io.Discard, onlyReader{c}, make([]byte, chunk))
					done <- n
				})
				e.StartConnector(fmt.Sprintf("ingress:\n  - service: tcp://%s\n", origin), nil)
				addr := e.ServeTCP("bulk")
				conns := make([]net.Conn, streams)
				for i := range conns {
					c, err := net.Dial("tcp", addr)
					if err != nil {
						b.Fatal(err)
					}
					defer c.Close()
					conns[i] = c
				}
				b.SetBytes(chunk)
				b.ReportAllocs()
				cpu0 := processCPU()
				b.ResetTimer()
				errs := make(chan error, streams)
				for i, c := range conns {
					ops := b.N / streams
					if i < b.N%streams {
						ops++
					}
					go func() {
						buf := make([]byte, chunk)
						for range ops {
							if _, err := c.Write(buf); err != nil {
								errs <- err
								return
							}
						}
						errs <- c.(*net.TCPConn).CloseWrite()
					}()
				}
				var total int64
				for range conns {
					if err := <-errs; err != nil {
						b.Fatal(err)
					}
				}
				for range conns {
					total += <-done
				}
				if total != int64(b.N)*chunk {
					b.Fatalf("origin got %d bytes, want %d", total, int64(b.N)*chunk)
				}
				b.StopTimer()
				b.ReportMetric((processCPU()-cpu0).Seconds()/(float64(b.N)*chunk/1e9), "cpu-s/GB")
			})
		}
	}
}

// onlyReader hides WriterTo/ReaderFrom so io.Copy uses the buffer.
type onlyReader struct{ io.Reader }

// processCPU is the user and system time of this process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
