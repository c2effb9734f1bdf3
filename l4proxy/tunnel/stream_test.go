package tunnel

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// TestResetUnblocksWrite: a Write blocked on flow control (the edge does not read)
// returns promptly when the writer resets the stream, and the edge sees a reset.
func TestResetUnblocksWrite(t *testing.T) {
	forEach(t, func(t *testing.T, tr transportCase, addr string) {
		p := newPair(t, tr, addr)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		s, cs := openAccept(t, ctx, p)
		cs.Respond(StatusOK, "")
		werr := make(chan error, 1)
		go func() {
			buf := make([]byte, 1<<20)
			for {
				if _, err := cs.Write(buf); err != nil {
					werr <- err
					return
				}
			}
		}()
		time.Sleep(300 * time.Millisecond) // windows fill up
		select {
		case err := <-werr:
			t.Fatalf("write failed before reset: %v", err)
		default:
		}
		cs.Reset()
		select {
		case err := <-werr:
			t.Logf("blocked write returned %v", err)
		case <-time.After(5 * time.Second):
			t.Fatal("blocked Write did not return after Reset")
		}
		_, err := io.Copy(io.Discard, s)
		if !errors.Is(err, ErrStreamReset) {
			t.Fatalf("edge read %v, want ErrStreamReset", err)
		}
	})
}

// TestEdgeClose: the connector reads EOF after the edge's Close, and its writes then fail.
func TestEdgeClose(t *testing.T) {
	forEach(t, func(t *testing.T, tr transportCase, addr string) {
		p := newPair(t, tr, addr)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, cs := openAccept(t, ctx, p)
		cs.Respond(StatusOK, "")
		s.Write([]byte("bye"))
		s.Close()
		if b, err := io.ReadAll(cs); err != nil || string(b) != "bye" {
			t.Fatalf("connector read %q %v", b, err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, err := cs.Write([]byte("more")); err != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("connector writes keep succeeding after the edge closed")
			}
			time.Sleep(10 * time.Millisecond)
		}
		cs.Close()
	})
}

func TestOpenStreamInvalid(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			p := newPair(t, tr, "127.0.0.1:0")
			_, err := p.edge.OpenStream(context.Background(), &Request{Kind: KindTCP, Hostname: strings.Repeat("x", 300)})
			if !errors.Is(err, ErrTooLong) {
				t.Fatalf("got %v", err)
			}
			if _, err := p.connector.OpenStream(context.Background(), testReq); !errors.Is(err, ErrWrongSide) {
				t.Fatalf("connector OpenStream: %v", err)
			}
			if _, _, err := p.edge.AcceptStream(context.Background()); !errors.Is(err, ErrWrongSide) {
				t.Fatalf("edge AcceptStream: %v", err)
			}
		})
	}
}

// TestStreamLimit: OpenStream blocks while the connector's MaxIncomingStreams are open.
func TestStreamLimit(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			cert, pin := edgeCert(t)
			tok, _ := NewToken([]string{"e:1"}, pin)
			ln, err := tr.listen("127.0.0.1:0", cert, StaticAuthenticator{tok.TunnelID: tok.Secret[:]}, testConfig())
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ech := make(chan Conn, 1)
			go func() { c, _ := ln.Accept(ctx); ech <- c }()
			cfg := testConfig()
			cfg.MaxIncomingStreams = 2
			conn, err := tr.dial(ctx, ln.Addr().String(), tok, [16]byte{1}, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.CloseWithError(0, "")
			edge := <-ech
			defer edge.CloseWithError(0, "")
			var open []Stream
			for range 2 {
				s, err := edge.OpenStream(ctx, testReq)
				if err != nil {
					t.Fatal(err)
				}
				s.Write([]byte("x")) // QUIC announces a stream with its first frame
				open = append(open, s)
			}
			for range 2 {
				if _, _, err := conn.AcceptStream(ctx); err != nil {
					t.Fatal(err)
				}
			}
			sctx, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer scancel()
			if _, err := edge.OpenStream(sctx, testReq); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("third OpenStream over the limit: %v, want a deadline error", err)
			}
			for _, s := range open {
				s.Reset()
			}
		})
	}
}

// TestBadHeaderIsReset: a stream whose header is garbage is reset by the
// connector and never reaches AcceptStream.
func TestBadHeaderIsReset(t *testing.T) {
	forEach(t, func(t *testing.T, tr transportCase, addr string) {
		p := newPair(t, tr, addr)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		garbage := []byte{0, 3, 9, 9, 9, 'x'}
		var readErr error
		switch e := p.edge.(type) {
		case *quicConn:
			s, err := e.qc.OpenStreamSync(ctx)
			if err != nil {
				t.Fatal(err)
			}
			s.Write(garbage)
			_, readErr = io.ReadAll(s)
		case *h2Conn:
			s, err := e.roundTrip(ctx, h2PathStream, garbage)
			if err == nil {
				_, readErr = io.ReadAll(s)
			} else {
				readErr = err
			}
		}
		if readErr == nil {
			t.Fatal("garbage stream ended cleanly")
		}
		actx, acancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer acancel()
		if _, _, err := p.connector.AcceptStream(actx); err == nil {
			t.Fatal("garbage stream accepted")
		}
	})
}

// TestHTTP2UnknownPath: unknown paths get 404 on the connector.
func TestHTTP2UnknownPath(t *testing.T) {
	p := newPair(t, transports[1], "127.0.0.1:0")
	e := p.edge.(*h2Conn)
	_, err := e.roundTrip(context.Background(), "/nope", nil)
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("got %v", err)
	}
}

func TestDatagramTooLarge(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			p := newPair(t, tr, "127.0.0.1:0")
			size := MaxDatagramLen + 1
			if tr.name == ProtoQUIC {
				size = 1500 // more than one packet
			}
			if err := p.edge.SendDatagram(make([]byte, size)); !errors.Is(err, ErrDatagramTooLarge) {
				t.Fatalf("got %v, want ErrDatagramTooLarge", err)
			}
		})
	}
}

// TestRespondOKReachesEdge: however a stream answered OK goes on, the
// edge reads the OK and then what the connector did: a half-close with
// no data (EOF, no error), a close, a first write larger than a header
// buffer (all of it, in order), or a reset (ErrStreamReset, not a
// refusal). On QUIC the OK waits for the first bytes or the close.
func TestRespondOKReachesEdge(t *testing.T) {
	big := make([]byte, 64<<10)
	for i := range big {
		big[i] = byte(i * 7)
	}
	ends := []struct {
		name string
		end  func(Stream) error
		want []byte
		err  error
	}{
		{"closewrite", func(cs Stream) error { return cs.CloseWrite() }, nil, nil},
		{"close", func(cs Stream) error { return cs.Close() }, nil, nil},
		{"big write", func(cs Stream) error {
			if _, err := cs.Write(big); err != nil {
				return err
			}
			return cs.CloseWrite()
		}, big, nil},
		{"reset", func(cs Stream) error { cs.Reset(); return nil }, nil, ErrStreamReset},
	}
	forEach(t, func(t *testing.T, tr transportCase, addr string) {
		p := newPair(t, tr, addr)
		for _, e := range ends {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			s, cs := openAccept(t, ctx, p)
			if err := cs.Respond(StatusOK, ""); err != nil {
				t.Fatal(err)
			}
			if err := e.end(cs); err != nil {
				t.Fatalf("%s: %v", e.name, err)
			}
			got, err := io.ReadAll(s)
			var se *StreamError
			switch {
			case errors.As(err, &se):
				t.Errorf("%s: the edge read a refusal: %v", e.name, err)
			case e.err == nil && err != nil:
				t.Errorf("%s: the edge read %v", e.name, err)
			case e.err != nil && !errors.Is(err, e.err):
				t.Errorf("%s: the edge read %v, want %v", e.name, err, e.err)
			case e.err == nil && !bytes.Equal(got, e.want):
				t.Errorf("%s: the edge read %d bytes, want %d", e.name, len(got), len(e.want))
			}
			s.Close()
			cs.Close()
			cancel()
		}
	})
}
