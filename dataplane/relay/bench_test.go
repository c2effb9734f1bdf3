package relay

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
)

// BenchmarkRelay relays one loopback connection per op with each
// strategy: both ends send benchBytes at once, half-close and read to
// EOF. It reports the bytes relayed (both ways) per second and the
// allocations of an op (the relay's, the ends' buffers are made once);
// setting up the connections is not timed. With the sockmap strategy it
// also reports the share of the bytes the kernel redirected (the rest
// the program passed to user space: the peer could not keep up).
//
//	go test -run '^$' -bench Relay -benchmem ./dataplane/relay/
func BenchmarkRelay(b *testing.B) {
	const benchBytes = 32 << 20 // each way, per op
	for _, s := range []Strategy{Copy, Splice, Sockmap} {
		b.Run(s.String(), func(b *testing.B) {
			e, err := New(Config{Strategy: s})
			if err != nil {
				b.Skipf("%s: %v", s, err)
			}
			b.Cleanup(func() { e.Close() })
			bufs := [4][]byte{}
			for i := range bufs {
				bufs[i] = make([]byte, 256<<10)
				copy(bufs[i], noise)
			}
			st0 := e.Stats()
			b.SetBytes(2 * benchBytes)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				client, a := tcpPair(b)
				bb, server := tcpPair(b)
				b.StartTimer()
				done := make(chan Result, 1)
				go func() { done <- e.Relay(context.Background(), a, bb, Options{}) }()
				var wg sync.WaitGroup
				wg.Add(4)
				send := func(c *net.TCPConn, buf []byte) {
					defer wg.Done()
					for n := 0; n < benchBytes; n += len(buf) {
						if _, err := c.Write(buf); err != nil {
							b.Error(err)
							return
						}
					}
					c.CloseWrite()
				}
				recv := func(c *net.TCPConn, buf []byte) {
					defer wg.Done()
					var n int64
					for {
						k, err := c.Read(buf)
						n += int64(k)
						if err == io.EOF {
							break
						}
						if err != nil {
							b.Error(err)
							return
						}
					}
					if n != benchBytes {
						b.Errorf("received %d bytes, want %d", n, benchBytes)
					}
				}
				go send(client, bufs[0])
				go send(server, bufs[1])
				go recv(client, bufs[2])
				go recv(server, bufs[3])
				wg.Wait()
				res := <-done
				if res.Err != nil || res.AToB != benchBytes || res.BToA != benchBytes {
					b.Fatalf("result %+v", res)
				}
				b.StopTimer()
				client.Close()
				server.Close()
				b.StartTimer()
			}
			b.StopTimer()
			if s == Sockmap {
				st := e.Stats()
				kernel := st.SockmapRedirected - st0.SockmapRedirected
				user := st.SockmapForwarded - st0.SockmapForwarded
				if kernel+user > 0 {
					b.ReportMetric(100*float64(kernel)/float64(kernel+user), "%kernel")
				}
			}
		})
	}
}
