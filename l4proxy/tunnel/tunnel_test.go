package tunnel

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestAuthOK(t *testing.T) {
	forEach(t, func(t *testing.T, tr transportCase, addr string) {
		p := newPair(t, tr, addr)
		if p.edge.TunnelID() != p.tok.TunnelID || p.connector.TunnelID() != p.tok.TunnelID {
			t.Fatal("tunnel ID mismatch")
		}
		if p.edge.ConnectorID() != [16]byte{1, 2, 3} {
			t.Fatalf("edge sees connector ID %x", p.edge.ConnectorID())
		}
		if p.edge.Protocol() != tr.name || p.connector.Protocol() != tr.name {
			t.Fatalf("protocol %q/%q", p.edge.Protocol(), p.connector.Protocol())
		}
	})
}

type lookupAuth struct {
	deleted    [16]byte
	live       Token
	generation uint64
}

func (lookupAuth) Secret([16]byte) ([]byte, bool) { return nil, false }
func (a lookupAuth) LookupTunnel(id [16]byte) ([]byte, uint64, AuthReason) {
	switch id {
	case a.deleted:
		return nil, 0, AuthTunnelDeleted
	case a.live.TunnelID:
		return a.live.Secret[:], a.generation, AuthOK
	}
	return nil, 0, AuthUnknownTunnel
}

// TestAuthRefused: an unknown tunnel, a deleted one and a wrong secret get
// one and the same refusal on the wire, so that a peer cannot tell whether
// a tunnel ID exists; a malformed proof gets its own.
func TestAuthRefused(t *testing.T) {
	cert, pin := edgeCert(t)
	tok, _ := NewToken([]string{"e:1"}, pin)
	wrong := tok
	wrong.Secret[0] ^= 1
	other, _ := NewToken([]string{"e:1"}, pin)
	cases := []struct {
		name string
		auth Authenticator
		tok  Token
	}{
		{"bad secret", StaticAuthenticator{tok.TunnelID: tok.Secret[:]}, wrong},
		{"unknown tunnel", StaticAuthenticator{tok.TunnelID: tok.Secret[:]}, other},
		{"bad secret (lookup)", lookupAuth{live: tok}, wrong},
		{"unknown tunnel (lookup)", lookupAuth{live: tok}, other},
		{"deleted", lookupAuth{deleted: tok.TunnelID}, tok},
	}
	for _, tr := range transports {
		seen := map[string]string{}
		for _, c := range cases {
			t.Run(tr.name+"/"+c.name, func(t *testing.T) {
				ln, err := tr.listen("127.0.0.1:0", cert, c.auth, testConfig())
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				go ln.Accept(context.Background())
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				start := time.Now()
				conn, err := tr.dial(ctx, ln.Addr().String(), c.tok, [16]byte{9}, testConfig())
				if err == nil {
					conn.CloseWithError(0, "")
					t.Fatal("dial succeeded")
				}
				var ae *AuthError
				if !errors.As(err, &ae) {
					t.Fatalf("error %v (%T) is not *AuthError", err, err)
				}
				if ae.Reason != AuthDenied || err.Error() != "tunnel refused by edge: unknown tunnel or bad secret" {
					t.Fatalf("refusal %v (reason %d), want %v", err, ae.Reason, AuthDenied)
				}
				seen[c.name] = fmt.Sprintf("%d %q", ae.Reason, ae.Message)
				if d := time.Since(start); d > 900*time.Millisecond {
					t.Errorf("refusal took %v", d)
				}
				t.Logf("%v", err)
			})
		}
		for name, got := range seen {
			if got != seen["bad secret"] {
				t.Errorf("%s: %s sees %s, a bad secret %s", tr.name, name, got, seen["bad secret"])
			}
		}
	}
}

// TestEdgeCheckAuth: the edge keeps the precise reason of a refusal (for
// its logs and counters) and the generation of the secret that
// authenticated, while the verdict it writes merges the reasons.
func TestEdgeCheckAuth(t *testing.T) {
	cert, pin := edgeCert(t)
	tok, _ := NewToken([]string{"e:1"}, pin)
	wrong := tok
	wrong.Secret[0] ^= 1
	other, _ := NewToken([]string{"e:1"}, pin)
	garbled := func(w io.Writer) { writeCtrl(w, ctrlAuth, []byte{ProtocolVersion, 1, 2}) }
	for _, c := range []struct {
		name    string
		auth    Authenticator
		tok     Token
		send    func(io.Writer) // instead of a proof from tok
		reason  AuthReason
		gen     uint64
		verdict AuthReason
	}{
		{"ok", lookupAuth{live: tok, generation: 42}, tok, nil, AuthOK, 42, AuthOK},
		{"ok (static)", StaticAuthenticator{tok.TunnelID: tok.Secret[:]}, tok, nil, AuthOK, 0, AuthOK},
		{"bad secret", lookupAuth{live: tok, generation: 42}, wrong, nil, AuthBadSecret, 42, AuthDenied},
		{"unknown tunnel", lookupAuth{live: tok}, other, nil, AuthUnknownTunnel, 0, AuthDenied},
		{"unknown tunnel (static)", StaticAuthenticator{tok.TunnelID: tok.Secret[:]}, other, nil, AuthUnknownTunnel, 0, AuthDenied},
		{"deleted", lookupAuth{deleted: tok.TunnelID}, tok, nil, AuthTunnelDeleted, 0, AuthDenied},
		{"malformed", lookupAuth{live: tok}, tok, garbled, AuthMalformed, 0, AuthMalformed},
	} {
		t.Run(c.name, func(t *testing.T) {
			client, server := tlsPair(t, cert)
			go func() {
				cs := client.ConnectionState()
				if c.send != nil {
					c.send(client)
				} else {
					connectorSendAuth(client, &cs, &c.tok, [16]byte{9})
				}
			}()
			cs := server.ConnectionState()
			hello, reason, _ := edgeCheckAuth(server, &cs, c.auth)
			if reason != c.reason || hello.generation != c.gen {
				t.Errorf("edgeCheckAuth: reason %v, generation %d; want %v, %d", reason, hello.generation, c.reason, c.gen)
			}
			var buf bytes.Buffer
			if err := edgeWriteAuthResult(&buf, reason); err != nil {
				t.Fatal(err)
			}
			err := connectorReadAuthResult(&buf)
			var ae *AuthError
			if c.verdict == AuthOK && err != nil || c.verdict != AuthOK && (!errors.As(err, &ae) || ae.Reason != c.verdict) {
				t.Errorf("the connector reads %v, want %v", err, c.verdict)
			}
		})
	}
}

// tlsPair returns the two ends of a TLS 1.3 session over a pipe.
func tlsPair(t *testing.T, cert tls.Certificate) (client, server *tls.Conn) {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	server = tls.Server(b, edgeTLSConfig(cert, ALPNQUIC))
	client = tls.Client(a, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{ALPNQUIC}, MinVersion: tls.VersionTLS13})
	errc := make(chan error, 1)
	go func() { errc <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return client, server
}

// TestAuthGeneration: the edge's Conn carries the generation its
// TunnelLookup gave for the secret that authenticated.
func TestAuthGeneration(t *testing.T) {
	cert, pin := edgeCert(t)
	tok, _ := NewToken([]string{"e:1"}, pin)
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			ln, err := tr.listen("127.0.0.1:0", cert, lookupAuth{live: tok, generation: 7}, testConfig())
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := tr.dial(ctx, ln.Addr().String(), tok, [16]byte{9}, testConfig())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.CloseWithError(0, "")
			ec, err := ln.Accept(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer ec.CloseWithError(0, "")
			if ec.Generation() != 7 || conn.Generation() != 0 {
				t.Errorf("generation: edge %d, connector %d; want 7 and 0", ec.Generation(), conn.Generation())
			}
		})
	}
}

// TestAuthClose: the edge closes a live connection for an auth reason (the
// token rotated); the connector's Context ends at once with that reason as
// an *AuthError, on both transports (HTTP/2 has no close code: the reason
// travels on the control stream).
func TestAuthClose(t *testing.T) {
	forEach(t, func(t *testing.T, tr transportCase, addr string) {
		p := newPair(t, tr, addr)
		serveEcho(t, p.connector)
		start := time.Now()
		p.edge.CloseWithError(CloseAuthRefused+uint64(AuthRotated), "token rotated: ask for the new token")
		if tr.name == ProtoHTTP2 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := p.edge.OpenStream(ctx, testReq)
			cancel()
			if !errors.Is(err, ErrDraining) && p.edge.Context().Err() == nil {
				t.Errorf("OpenStream on a connection being closed: %v, want ErrDraining", err)
			}
		}
		select {
		case <-p.connector.Context().Done():
		case <-time.After(5 * time.Second):
			t.Fatal("the connector's connection is still up")
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("the connector noticed after %v; want at once", d)
		}
		cause := context.Cause(p.connector.Context())
		var ae *AuthError
		if !errors.As(cause, &ae) || ae.Reason != AuthRotated || ae.Error() != "tunnel refused by edge: token rotated: ask for the new token" {
			t.Fatalf("cause %v (%T), want the AuthError of a rotated token", cause, cause)
		}
		select {
		case <-p.edge.Context().Done():
		case <-time.After(5 * time.Second):
			t.Fatal("the edge's connection is still up")
		}
		t.Logf("%v", cause)
	})
}

// TestOtherCloseNoAuthError: an ordinary close is not reported as a refusal.
func TestOtherCloseNoAuthError(t *testing.T) {
	forEach(t, func(t *testing.T, tr transportCase, addr string) {
		p := newPair(t, tr, addr)
		p.edge.CloseWithError(CloseNormal, "bye")
		select {
		case <-p.connector.Context().Done():
		case <-time.After(5 * time.Second):
			t.Fatal("the connector's connection is still up")
		}
		var ae *AuthError
		if cause := context.Cause(p.connector.Context()); errors.As(cause, &ae) {
			t.Errorf("cause %v after an ordinary close", cause)
		}
	})
}

func TestWrongPin(t *testing.T) {
	cert, pin := edgeCert(t)
	tok, _ := NewToken([]string{"e:1"}, pin)
	tok.EdgePin[5] ^= 0xff
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			ln, err := tr.listen("127.0.0.1:0", cert, StaticAuthenticator{tok.TunnelID: tok.Secret[:]}, testConfig())
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err = tr.dial(ctx, ln.Addr().String(), tok, [16]byte{9}, testConfig())
			if !errors.Is(err, ErrPinMismatch) {
				t.Fatalf("error %v, want ErrPinMismatch", err)
			}
		})
	}
}

var testReq = &Request{Kind: KindHTTP, Hostname: "app.internal", Path: "/x?y", Remote: netip.MustParseAddrPort("[fd00::5]:4242")}

func TestRequestArrives(t *testing.T) {
	forEach(t, func(t *testing.T, tr transportCase, addr string) {
		p := newPair(t, tr, addr)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := p.edge.OpenStream(ctx, testReq)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		cs, req, err := p.connector.AcceptStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if *req != *testReq {
			t.Fatalf("request %+v, want %+v", *req, *testReq)
		}
		if _, err := cs.Write([]byte("x")); !errors.Is(err, ErrNotResponded) {
			t.Fatalf("write before respond: %v", err)
		}
		cs.Respond(StatusOK, "")
		if err := cs.Respond(StatusOK, ""); !errors.Is(err, ErrAlreadyResponded) {
			t.Fatalf("second respond: %v", err)
		}
		if err := s.Respond(StatusOK, ""); !errors.Is(err, ErrWrongSide) {
			t.Fatalf("edge respond: %v", err)
		}
		cs.Close()
	})
}

func TestBulk64MiB(t *testing.T) {
	const size = 64 << 20
	forEach(t, func(t *testing.T, tr transportCase, addr string) {
		if testing.Short() {
			t.Skip("short")
		}
		p := newPair(t, tr, addr)
		serveEcho(t, p.connector)
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		defer cancel()
		s, err := p.edge.OpenStream(ctx, testReq)
		if err != nil {
			t.Fatal(err)
		}
		sent := sha256.New()
		errc := make(chan error, 1)
		go func() {
			rng := rand.NewChaCha8([32]byte{7})
			buf := make([]byte, 256<<10)
			for n := 0; n < size; n += len(buf) {
				rng.Read(buf)
				sent.Write(buf)
				if _, err := s.Write(buf); err != nil {
					errc <- err
					return
				}
			}
			errc <- s.CloseWrite()
		}()
		got := sha256.New()
		start := time.Now()
		n, err := io.CopyBuffer(got, onlyReader{s}, make([]byte, 256<<10))
		if err != nil {
			t.Fatalf("read after %d bytes: %v", n, err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("write: %v", err)
		}
		if n != size || !bytes.Equal(got.Sum(nil), sent.Sum(nil)) {
			t.Fatalf("echo mismatch: %d bytes", n)
		}
		t.Logf("64 MiB each way in %v", time.Since(start))
		s.Close()
	})
}

func TestHalfClose(t *testing.T) {
	forEach(t, func(t *testing.T, tr transportCase, addr string) {
		p := newPair(t, tr, addr)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := p.edge.OpenStream(ctx, testReq)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write([]byte("question")); err != nil {
			t.Fatal(err)
		}
		if err := s.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		cs, _, err := p.connector.AcceptStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := cs.Respond(StatusOK, ""); err != nil {
			t.Fatal(err)
		}
		q, err := io.ReadAll(cs)
		if err != nil || string(q) != "question" {
			t.Fatalf("connector read %q, %v", q, err)
		}
		// The edge's write side is closed; the connector still answers.
		if _, err := cs.Write([]byte("answer")); err != nil {
			t.Fatal(err)
		}
		if err := cs.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		a, err := io.ReadAll(s)
		if err != nil || string(a) != "answer" {
			t.Fatalf("edge read %q, %v", a, err)
		}
		cs.Close()
		s.Close()
	})
}

// TestHalfCloseConnectorFirst: the connector half-closes while the edge keeps sending.
func TestHalfCloseConnectorFirst(t *testing.T) {
	forEach(t, func(t *testing.T, tr transportCase, addr string) {
		p := newPair(t, tr, addr)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, cs := openAccept(t, ctx, p)
		cs.Respond(StatusOK, "")
		cs.Write([]byte("banner"))
		cs.CloseWrite()
		a, err := io.ReadAll(s)
		if err != nil || string(a) != "banner" {
			t.Fatalf("edge read %q, %v", a, err)
		}
		if _, err := s.Write([]byte("late")); err != nil {
			t.Fatal(err)
		}
		s.CloseWrite()
		q, err := io.ReadAll(cs)
		if err != nil || string(q) != "late" {
			t.Fatalf("connector read %q, %v", q, err)
		}
		cs.Close()
		s.Close()
	})
}

func TestReset(t *testing.T) {
	for _, side := range []string{"edge", "connector"} {
		forEach(t, func(t *testing.T, tr transportCase, addr string) {
			p := newPair(t, tr, addr)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := p.edge.OpenStream(ctx, testReq)
			if err != nil {
				t.Fatal(err)
			}
			s.Write([]byte("hello"))
			cs, _, err := p.connector.AcceptStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			cs.Respond(StatusOK, "")
			cs.Write([]byte("hi"))
			buf := make([]byte, 5)
			if _, err := io.ReadFull(cs, buf); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(s, buf[:2]); err != nil {
				t.Fatal(err)
			}
			resetter, peer := s, cs
			if side == "connector" {
				resetter, peer = cs, s
			}
			resetter.Reset()
			_, err = io.ReadAll(peer)
			if err == nil || !errors.Is(err, ErrStreamReset) {
				t.Fatalf("%s reset: peer read error %v, want ErrStreamReset", side, err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				_, err = peer.Write(make([]byte, 1024))
				if err != nil || time.Now().After(deadline) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if err == nil {
				t.Fatalf("%s reset: peer writes keep succeeding", side)
			}
			t.Logf("%s reset: peer read/write error %v", side, err)
		})
	}
}

func TestRespondRefused(t *testing.T) {
	forEach(t, func(t *testing.T, tr transportCase, addr string) {
		p := newPair(t, tr, addr)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, cs := openAccept(t, ctx, p)
		if err := cs.Respond(StatusNoRule, "no rule for app.internal"); err != nil {
			t.Fatal(err)
		}
		_, err := s.Read(make([]byte, 10))
		var se *StreamError
		if !errors.As(err, &se) || se.Status != StatusNoRule || se.Message != "no rule for app.internal" {
			t.Fatalf("read error %v, want *StreamError no rule", err)
		}
		if _, err2 := s.Read(make([]byte, 10)); !errors.As(err2, &se) {
			t.Fatalf("second read %v", err2)
		}
	})
}

func TestConcurrentStreams(t *testing.T) {
	const n = 200
	forEach(t, func(t *testing.T, tr transportCase, addr string) {
		p := newPair(t, tr, addr)
		serveEcho(t, p.connector)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Go(func() {
				s, err := p.edge.OpenStream(ctx, testReq)
				if err != nil {
					errs <- err
					return
				}
				defer s.Close()
				msg := []byte(strings.Repeat(fmt.Sprintf("stream %d;", i), 100))
				go func() {
					s.Write(msg)
					s.CloseWrite()
				}()
				got, err := io.ReadAll(s)
				if err != nil {
					errs <- fmt.Errorf("stream %d: %w", i, err)
					return
				}
				if !bytes.Equal(got, msg) {
					errs <- fmt.Errorf("stream %d: echo mismatch", i)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

func TestDatagrams(t *testing.T) {
	forEach(t, func(t *testing.T, tr transportCase, addr string) {
		p := newPair(t, tr, addr)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		open, err := AppendFlowOpen(nil, 7, &FlowOpen{Hostname: "dns", Remote: netip.MustParseAddrPort("198.18.0.1:5353")})
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2048)
		// Datagrams may be lost even on loopback in theory: resend until one arrives.
		recv := func(c Conn, send func()) []byte {
			for range 50 {
				send()
				rctx, rcancel := context.WithTimeout(ctx, 100*time.Millisecond)
				n, err := c.ReceiveDatagram(rctx, buf)
				rcancel()
				if err == nil {
					return buf[:n]
				}
			}
			t.Fatal("no datagram received")
			return nil
		}
		got := recv(p.connector, func() { p.edge.SendDatagram(open) })
		typ, flow, body, err := ParseDatagram(got)
		if err != nil || typ != DatagramFlowOpen || flow != 7 {
			t.Fatalf("flow open: %v %v %v", typ, flow, err)
		}
		fo, err := ParseFlowOpen(body)
		if err != nil || fo.Hostname != "dns" || fo.Remote.Port() != 5353 {
			t.Fatalf("flow open body %+v %v", fo, err)
		}
		reply := AppendDatagram(nil, 7, []byte("pong"))
		got = recv(p.edge, func() { p.connector.SendDatagram(reply) })
		typ, flow, body, err = ParseDatagram(got)
		if err != nil || typ != DatagramData || flow != 7 || string(body) != "pong" {
			t.Fatalf("data: %v %v %q %v", typ, flow, body, err)
		}
		// Short buffer.
		p.connector.SendDatagram(reply)
		small := make([]byte, 3)
		if n, err := p.edge.ReceiveDatagram(ctx, small); err != nil && (err != io.ErrShortBuffer || n != 3) {
			t.Fatalf("short buffer: %d %v", n, err)
		}
	})
}

func TestDrain(t *testing.T) {
	forEach(t, func(t *testing.T, tr transportCase, addr string) {
		p := newPair(t, tr, addr)
		if p.edge.Draining() {
			t.Fatal("draining before Drain")
		}
		if err := p.edge.Drain(); !errors.Is(err, ErrWrongSide) {
			t.Fatalf("edge Drain: %v", err)
		}
		if err := p.connector.Drain(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for !p.edge.Draining() {
			if time.Now().After(deadline) {
				t.Fatal("edge never saw drain")
			}
			time.Sleep(5 * time.Millisecond)
		}
		if _, err := p.edge.OpenStream(context.Background(), testReq); !errors.Is(err, ErrDraining) {
			t.Fatalf("open after drain: %v", err)
		}
	})
}

func TestCloseCancelsContext(t *testing.T) {
	for _, closer := range []string{"edge", "connector"} {
		forEach(t, func(t *testing.T, tr transportCase, addr string) {
			p := newPair(t, tr, addr)
			a, b := p.edge, p.connector
			if closer == "connector" {
				a, b = b, a
			}
			a.CloseWithError(0, "bye")
			for _, c := range []Conn{a, b} {
				select {
				case <-c.Context().Done():
				case <-time.After(5 * time.Second):
					t.Fatalf("%s close: context of %s side not canceled", closer, c.Protocol())
				}
			}
		})
	}
}

func TestDialAuto(t *testing.T) {
	cert, pin := edgeCert(t)
	tok, _ := NewToken([]string{"e:1"}, pin)
	auth := StaticAuthenticator{tok.TunnelID: tok.Secret[:]}
	cfg := testConfig()
	cfg.QUICHandshakeTimeout = 500 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// HTTP/2 only: QUIC gets no answer on the UDP port and auto falls back.
	hl, err := ListenHTTP2("127.0.0.1:0", cert, auth, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer hl.Close()
	go hl.Accept(ctx)
	c, err := Dial(ctx, ProtoAuto, hl.Addr().String(), tok, [16]byte{1}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c.Protocol() != ProtoHTTP2 {
		t.Fatalf("auto used %s", c.Protocol())
	}
	c.CloseWithError(0, "")

	// Both on the same port: auto picks QUIC.
	port := hl.Addr().(interface{ String() string }).String()
	ql, err := ListenQUIC(port, cert, auth, cfg)
	if err != nil {
		t.Skipf("UDP port %s busy: %v", port, err)
	}
	defer ql.Close()
	go ql.Accept(ctx)
	c, err = Dial(ctx, ProtoAuto, port, tok, [16]byte{1}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c.Protocol() != ProtoQUIC {
		t.Fatalf("auto used %s", c.Protocol())
	}
	c.CloseWithError(0, "")

	if _, err := Dial(ctx, "sctp", port, tok, [16]byte{1}, cfg); err == nil {
		t.Fatal("unknown protocol accepted")
	}
}

// TestNoGoroutineLeak opens and finishes streams, closes both ends and checks that
// the goroutine count returns to where it was.
func TestNoGoroutineLeak(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			func() {
				p := newPair(t, tr, "127.0.0.1:0")
				serveEcho(t, p.connector)
				for range 20 {
					s, err := p.edge.OpenStream(context.Background(), testReq)
					if err != nil {
						t.Fatal(err)
					}
					s.Write([]byte("x"))
					s.CloseWrite()
					io.ReadAll(s)
					s.Close()
				}
				p.connector.CloseWithError(0, "")
				p.edge.CloseWithError(0, "")
				p.ln.Close()
			}()
			deadline := time.Now().Add(5 * time.Second)
			for runtime.NumGoroutine() > before+2 {
				if time.Now().After(deadline) {
					buf := make([]byte, 1<<20)
					t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// TestTransportStats: after a stream carried 1 MiB each way, both ends
// count what they sent (QUIC packets, HTTP/2's TCP segments), lost no
// more than that, and QUIC knows its round-trip time from the handshake.
func TestTransportStats(t *testing.T) {
	forEach(t, func(t *testing.T, tr transportCase, addr string) {
		p := newPair(t, tr, addr)
		serveEcho(t, p.connector)
		s, err := p.edge.OpenStream(context.Background(), testReq)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		data := bytes.Repeat([]byte("x"), 1<<20)
		go func() {
			_, _ = s.Write(data)
			_ = s.CloseWrite()
		}()
		got, err := io.ReadAll(s)
		if err != nil || len(got) != len(data) {
			t.Fatalf("echo: %d bytes, %v", len(got), err)
		}
		for side, c := range map[string]Conn{"edge": p.edge, "connector": p.connector} {
			st := c.Stats()
			// 1 MiB takes at least 1 MiB / 64 KiB segments (TSO) or
			// 1 MiB / 1.5 KB QUIC packets.
			if st.Sent < 16 || st.Lost > st.Sent {
				t.Errorf("%s: %+v", side, st)
			}
			if tr.name == "quic" && st.RTT <= 0 {
				t.Errorf("%s: QUIC without a round-trip time: %+v", side, st)
			}
		}
	})
}
