package rawbulk

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// BenchmarkRawRelay is the in-process twin of the rawquic and rawtls relay
// peers, shaped as l4proxy/edge's BenchmarkTunnelBulk: user TCP -> relay
// -> one QUIC stream or TLS connection -> receiver -> origin TCP, on
// loopback, 256 KiB per op, with the CPU time of the process per GB. Run
// both pinned to one CPU to compare the tunnel with its raw peers without
// the noise of namespaces and other load:
//
//	taskset -c 1 go test -run '^$' -bench RawRelay ./bench/internal/rawbulk/
//	taskset -c 1 go test -run '^$' -bench TunnelBulk/.*/up ./l4proxy/edge/
func BenchmarkRawRelay(b *testing.B) {
	for _, transport := range []string{"quic", "tls"} {
		b.Run(transport+"/up", func(b *testing.B) {
			done := make(chan int64, 1)
			origin := listen(b, func(c *net.TCPConn) {
				n, _ := io.CopyBuffer(io.Discard, struct{ io.Reader }{c}, make([]byte, RelayBufSize))
				done <- n
			})
			var edge string
			if transport == "quic" {
				edge = quicRelay(b, origin)
			} else {
				edge = tlsRelay(b, origin)
			}
			c, err := net.Dial("tcp", edge)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, RelayBufSize)
			b.SetBytes(RelayBufSize)
			cpu0 := processCPU()
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			c.(*net.TCPConn).CloseWrite()
			if n := <-done; n != int64(b.N)*RelayBufSize {
				b.Fatalf("origin got %d bytes, want %d", n, int64(b.N)*RelayBufSize)
			}
			b.StopTimer()
			b.ReportMetric((processCPU()-cpu0).Seconds()/(float64(b.N)*RelayBufSize/1e9), "cpu-s/GB")
		})
	}
}

// listen serves each TCP connection on a loopback port with handle.
func listen(b *testing.B, handle func(*net.TCPConn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go ServeTCP(ln, func(c *net.TCPConn) {
		defer c.Close()
		handle(c)
	})
	return ln.Addr().String()
}

// quicConfig is bench/cmd/rawquic's: the tunnel's windows.
func quicConfig() *quic.Config {
	return &quic.Config{
		MaxIdleTimeout:                 20 * time.Second,
		InitialStreamReceiveWindow:     512 << 10,
		MaxStreamReceiveWindow:         16 << 20,
		InitialConnectionReceiveWindow: 1 << 20,
		MaxConnectionReceiveWindow:     32 << 20,
		MaxIncomingStreams:             100,
	}
}

type quicStream struct{ *quic.Stream }

func (s quicStream) CloseWrite() error { return s.Stream.Close() }

// quicRelay starts a receiver relaying QUIC streams to origin and a relay
// carrying TCP connections over one QUIC connection to it; it returns the
// relay's TCP address.
func quicRelay(b *testing.B, origin string) string {
	ql, err := quic.ListenAddr("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{selfSigned(b)}, NextProtos: []string{"bench"}}, quicConfig())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ql.Close() })
	go func() {
		qc, err := ql.Accept(context.Background())
		if err != nil {
			return
		}
		for {
			s, err := qc.AcceptStream(context.Background())
			if err != nil {
				return
			}
			go func() {
				c, err := net.Dial("tcp", origin)
				if err != nil {
					s.CancelRead(1)
					return
				}
				Relay(c.(*net.TCPConn), quicStream{s}, s.Close)
			}()
		}
	}()
	qc, err := quic.DialAddr(context.Background(), ql.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"bench"}}, quicConfig())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { qc.CloseWithError(0, "") })
	return listen(b, func(c *net.TCPConn) {
		s, err := qc.OpenStreamSync(context.Background())
		if err != nil {
			return
		}
		Relay(c, quicStream{s}, s.Close)
	})
}

// tlsRelay is quicRelay with one TLS connection per TCP connection.
func tlsRelay(b *testing.B, origin string) string {
	tl, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{selfSigned(b)}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tl.Close() })
	go func() {
		for {
			tc, err := tl.Accept()
			if err != nil {
				return
			}
			go func() {
				c, err := net.Dial("tcp", origin)
				if err != nil {
					tc.Close()
					return
				}
				Relay(c.(*net.TCPConn), tc.(*tls.Conn), tc.Close)
			}()
		}
	}()
	addr := tl.Addr().String()
	return listen(b, func(c *net.TCPConn) {
		tc, err := tls.Dial("tcp", addr, &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true})
		if err != nil {
			return
		}
		Relay(c, tc, tc.Close)
	})
}

func selfSigned(b *testing.B) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), DNSNames: []string{"bench.test"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		b.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// processCPU is the user and system time of this process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
