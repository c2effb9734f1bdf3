package tunnel

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/onramp-net/onramp/dataplane/steer"
)

// steeredPair is newPairConfig on a QUIC listener of n steered sockets;
// it skips where steering cannot load (fails under CI=true).
func steeredPair(t *testing.T, addr string, n int) (*pair, *QUICListener) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("QUIC steering is Linux's")
	}
	cfg := testConfig()
	cfg.QUICSockets = n
	p := newPairConfig(t, transports[0], addr, cfg)
	ln := p.ln.(*QUICListener)
	if got, err := ln.Steering(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and QUIC steering is off: %v", err)
		}
		t.Skipf("QUIC steering is off here: %v", err)
	} else if got != n {
		t.Fatalf("%d sockets, want %d", got, n)
	}
	return p, ln
}

func steerCounts(t *testing.T, ln *QUICListener) []steer.Count {
	t.Helper()
	c, err := ln.SteeringCounts()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// onlySocket returns the one socket whose counts grew from before to
// after, failing if more did.
func onlySocket(t *testing.T, before, after []steer.Count) int {
	t.Helper()
	k := -1
	for i := range after {
		if after[i] != before[i] {
			if k >= 0 {
				t.Fatalf("datagrams of one connection reached sockets %d and %d: %v -> %v", k, i, before, after)
			}
			k = i
		}
	}
	if k < 0 {
		t.Fatalf("no datagram counted: %v", after)
	}
	return k
}

// TestQUICSteeredMigration: a connector whose UDP source port changes
// mid-transfer (quic-go's path migration onto a new socket) keeps its
// tunnel, its streams and its Transport on the edge: after the handshake
// every datagram reaches the edge's socket by connection ID, none by hash.
func TestQUICSteeredMigration(t *testing.T) {
	for _, addr := range loopbacks(t) {
		t.Run(addr, func(t *testing.T) {
			const n = 4
			p, ln := steeredPair(t, addr, n)
			serveEcho(t, p.connector)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			s, err := p.edge.OpenStream(ctx, testReq)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			echo := func() {
				t.Helper()
				out := make([]byte, 256<<10)
				rand.Read(out)
				errc := make(chan error, 1)
				go func() { _, err := s.Write(out); errc <- err }()
				in := make([]byte, len(out))
				if _, err := io.ReadFull(s, in); err != nil {
					t.Fatalf("echo: %v", err)
				}
				if err := <-errc; err != nil {
					t.Fatalf("echo write: %v", err)
				}
				if !bytes.Equal(in, out) {
					t.Fatal("echo: the data came back changed")
				}
			}
			echo()
			handshake := steerCounts(t, ln)
			k := onlySocket(t, make([]steer.Count, n), handshake)
			t.Logf("the connection is on socket %d: %+v", k, handshake)

			qc := p.connector.(*quicConn).qc
			ports := map[int]bool{p.edge.RemoteAddr().(*net.UDPAddr).Port: true}
			for range 3 {
				network := "udp4"
				if qc.LocalAddr().(*net.UDPAddr).IP.To4() == nil {
					network = "udp6"
				}
				udp, err := net.ListenUDP(network, nil)
				if err != nil {
					t.Fatal(err)
				}
				tr := &quic.Transport{Conn: udp}
				t.Cleanup(func() { tr.Close(); udp.Close() })
				path, err := qc.AddPath(tr)
				if err != nil {
					t.Fatal(err)
				}
				// Migrate while data flows.
				done := make(chan struct{})
				go func() { defer close(done); echo() }()
				if err := path.Probe(ctx); err != nil {
					t.Fatalf("probe: %v", err)
				}
				if err := path.Switch(); err != nil {
					t.Fatalf("switch: %v", err)
				}
				<-done
				echo()
				port := udp.LocalAddr().(*net.UDPAddr).Port
				if got := p.edge.RemoteAddr().(*net.UDPAddr).Port; got != port {
					t.Fatalf("the edge sees the connector at port %d, it moved to %d", got, port)
				}
				ports[port] = true
			}
			after := steerCounts(t, ln)
			if got := onlySocket(t, make([]steer.Count, n), after); got != k {
				t.Fatalf("socket %d, was %d", got, k)
			}
			if after[k].Hash != handshake[k].Hash {
				t.Fatalf("datagrams steered by hash after the handshake: %+v -> %+v", handshake[k], after[k])
			}
			if len(ports) != 4 {
				t.Fatalf("source ports %v: want 4", ports)
			}
			select {
			case <-p.edge.Context().Done():
				t.Fatal("the edge's connection ended")
			default:
			}
			t.Logf("after 3 migrations (ports %v): socket %d %+v", ports, k, after[k])
		})
	}
}

// TestQUICSteeredSpread: connectors' connections spread over the
// steered sockets, and each stays on one.
func TestQUICSteeredSpread(t *testing.T) {
	const n = 2
	p, ln := steeredPair(t, "127.0.0.1:0", n)
	cfg := testConfig()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() {
		for {
			c, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			t.Cleanup(func() { c.CloseWithError(0, "") })
		}
	}()
	const conns = 16
	for i := range conns {
		c, err := DialQUIC(ctx, ln.Addr().String(), p.tok, [16]byte{byte(i)}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.CloseWithError(0, "") })
	}
	per := steerCounts(t, ln)
	used := 0
	for _, c := range per {
		if c.Total() > 0 {
			used++
		}
	}
	// Each socket gets a connection but with probability 2^-16.
	if used != n {
		t.Fatalf("%d connections used %d of %d sockets: %+v", conns+1, used, n, per)
	}
	t.Logf("%d connections over %d sockets: %+v", conns+1, n, per)
}
