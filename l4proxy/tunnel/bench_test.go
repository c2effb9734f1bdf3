package tunnel

import (
	"context"
	"io"
	"syscall"
	"testing"
	"time"
)

// BenchmarkBulk measures one stream's throughput over loopback, edge to
// connector (upload, as iperf3 in the bench harness) and connector to edge
// (download): the receiver discards what it reads. Besides MB/s it reports
// the CPU time of the whole process (both ends, the kernel's work on the
// loopback included) per GB: on a machine where the edge and the connector
// share one CPU, as in make bench, that is what bounds throughput, and it
// is less disturbed than wall time by other load. Run it pinned to one CPU
// to see the one-CPU figure: taskset -c 1 go test -bench Bulk ...
func BenchmarkBulk(b *testing.B) {
	for _, tr := range transports {
		for _, dir := range []string{"up", "down"} {
			b.Run(tr.name+"/"+dir, func(b *testing.B) {
				p := newPair(b, tr, "127.0.0.1:0")
				accepted := make(chan Stream, 1)
				go func() {
					s, _, err := p.connector.AcceptStream(context.Background())
					if err != nil {
						close(accepted)
						return
					}
					s.Respond(StatusOK, "")
					accepted <- s
				}()
				es, err := p.edge.OpenStream(context.Background(), testReq)
				if err != nil {
					b.Fatal(err)
				}
				// The edge's first Read waits for the response: start it.
				cs := <-accepted
				if cs == nil {
					b.Fatal("no stream accepted")
				}
				src, dst := es, cs
				if dir == "down" {
					src, dst = cs, es
				}
				done := make(chan int64, 1)
				go func() {
					n, _ := io.CopyBuffer(io.Discard, onlyReader{dst}, make([]byte, 256<<10))
					done <- n
				}()
				buf := make([]byte, 256<<10)
				b.SetBytes(int64(len(buf)))
				b.ReportAllocs()
				cpu0 := processCPU()
				b.ResetTimer()
				for b.Loop() {
					if _, err := src.Write(buf); err != nil {
						b.Fatal(err)
					}
				}
				src.CloseWrite()
				if n := <-done; n != int64(b.N)*int64(len(buf)) {
					b.Fatalf("read %d bytes, want %d", n, int64(b.N)*int64(len(buf)))
				}
				b.StopTimer()
				b.ReportMetric((processCPU()-cpu0).Seconds()/(float64(b.N)*float64(len(buf))/1e9), "cpu-s/GB")
				es.Close()
				cs.Close()
			})
		}
	}
}

// processCPU is the user and system time of this process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkDatagramCodec(b *testing.B) {
	payload := make([]byte, 1200)
	buf := make([]byte, 0, 2048)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		d := AppendDatagram(buf[:0], 42, payload)
		if _, _, p, err := ParseDatagram(d); err != nil || len(p) != len(payload) {
			b.Fatal("parse")
		}
	}
}

func BenchmarkRequestCodec(b *testing.B) {
	buf := make([]byte, 0, MaxRequestLen)
	b.ReportAllocs()
	for b.Loop() {
		d := AppendRequest(buf[:0], testReq)
		if _, _, err := ParseRequest(d); err != nil {
			b.Fatal(err)
		}
	}
}
