package tunnel

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

type transportCase struct {
	name   string
	listen func(addr string, cert tls.Certificate, auth Authenticator, cfg *Config) (Listener, error)
	dial   func(ctx context.Context, addr string, tok Token, id [16]byte, cfg *Config) (Conn, error)
}

var transports = []transportCase{
	{
		name: ProtoQUIC,
		listen: func(addr string, cert tls.Certificate, auth Authenticator, cfg *Config) (Listener, error) {
			return ListenQUIC(addr, cert, auth, cfg)
		},
		dial: DialQUIC,
	},
	{
		name: ProtoHTTP2,
		listen: func(addr string, cert tls.Certificate, auth Authenticator, cfg *Config) (Listener, error) {
			return ListenHTTP2(addr, cert, auth, cfg)
		},
		dial: DialHTTP2,
	},
}

var (
	certOnce sync.Once
	testCert tls.Certificate
	testPin  [32]byte
)

func edgeCert(t testing.TB) (tls.Certificate, [32]byte) {
	certOnce.Do(func() {
		var err error
		testCert, _, _, err = GenerateEdgeCertificate("localhost", "127.0.0.1", "::1")
		if err != nil {
			panic(err)
		}
		testPin, err = CertificatePin(&testCert)
		if err != nil {
			panic(err)
		}
	})
	return testCert, testPin
}

// loopbacks returns the listen addresses to test: IPv4, and IPv6 when available
// (required under CI=true).
func loopbacks(t testing.TB) []string {
	addrs := []string{"127.0.0.1:0"}
	if ln, err := net.Listen("tcp", "[::1]:0"); err == nil {
		ln.Close()
		addrs = append(addrs, "[::1]:0")
	} else if os.Getenv("CI") == "true" {
		t.Fatalf("::1 unavailable under CI: %v", err)
	} else {
		t.Logf("skipping IPv6: ::1 unavailable: %v", err)
	}
	return addrs
}

type pair struct {
	ln        Listener
	edge      Conn
	connector Conn
	tok       Token
}

func testConfig() *Config {
	return &Config{HandshakeTimeout: 5 * time.Second}
}

// newPair listens with tr on addr, dials it and returns both authenticated ends.
func newPair(t testing.TB, tr transportCase, addr string) *pair {
	t.Helper()
	return newPairConfig(t, tr, addr, testConfig())
}

// newPairConfig is newPair with cfg on both ends.
func newPairConfig(t testing.TB, tr transportCase, addr string, cfg *Config) *pair {
	t.Helper()
	cert, pin := edgeCert(t)
	tok, err := NewToken([]string{"edge.example:443"}, pin)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tr.listen(addr, cert, StaticAuthenticator{tok.TunnelID: tok.Secret[:]}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type res struct {
		c   Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept(ctx)
		ch <- res{c, err}
	}()
	cid := [16]byte{1, 2, 3}
	conn, err := tr.dial(ctx, ln.Addr().String(), tok, cid, cfg)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatalf("accept: %v", r.err)
	}
	t.Cleanup(func() {
		conn.CloseWithError(0, "")
		r.c.CloseWithError(0, "")
	})
	return &pair{ln: ln, edge: r.c, connector: conn, tok: tok}
}

// serveEcho makes the connector answer every stream OK and echo it, half-closing after EOF.
func serveEcho(t testing.TB, c Conn) {
	go func() {
		for {
			s, _, err := c.AcceptStream(context.Background())
			if err != nil {
				return
			}
			go func() {
				if err := s.Respond(StatusOK, ""); err != nil {
					s.Reset()
					return
				}
				buf := make([]byte, 64<<10)
				if _, err := io.CopyBuffer(s, onlyReader{s}, buf); err != nil {
					s.Reset()
					return
				}
				s.Close()
			}()
		}
	}()
}

// onlyReader hides WriterTo/ReaderFrom so io.Copy uses the buffer.
type onlyReader struct{ io.Reader }

func forEach(t *testing.T, f func(t *testing.T, tr transportCase, addr string)) {
	for _, tr := range transports {
		for _, addr := range loopbacks(t) {
			t.Run(tr.name+"/"+addr, func(t *testing.T) { f(t, tr, addr) })
		}
	}
}

// openAccept opens a stream with testReq on p's edge and accepts it on
// p's connector: the edge's and the connector's ends.
func openAccept(t *testing.T, ctx context.Context, p *pair) (edge, connector Stream) {
	t.Helper()
	s, err := p.edge.OpenStream(ctx, testReq)
	if err != nil {
		t.Fatal(err)
	}
	cs, _, err := p.connector.AcceptStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s, cs
}
