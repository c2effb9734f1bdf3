package tunnel

import (
	"context"
	"io"
	"testing"
)

// BenchmarkBulk measures one stream's edge-to-connector throughput over loopback:
// the connector discards what it reads.
func BenchmarkBulk(b *testing.B) {
	for _, tr := range transports {
		b.Run(tr.name, func(b *testing.B) {
			p := newPair(b, tr, "127.0.0.1:0")
			done := make(chan int64, 1)
			go func() {
				s, _, err := p.connector.AcceptStream(context.Background())
				if err != nil {
					done <- -1
					return
				}
				s.Respond(StatusOK, "")
				n, _ := io.CopyBuffer(io.Discard, onlyReader{s}, make([]byte, 256<<10))
				s.Close()
				done <- n
			}()
			s, err := p.edge.OpenStream(context.Background(), testReq)
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 256<<10)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := s.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			s.CloseWrite()
			if n := <-done; n != int64(b.N)*int64(len(buf)) {
				b.Fatalf("connector read %d bytes, want %d", n, int64(b.N)*int64(len(buf)))
			}
			b.StopTimer()
			s.Close()
		})
	}
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
