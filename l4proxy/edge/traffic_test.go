package edge_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l4proxy/connector"
	"github.com/onramp-net/onramp/l4proxy/edge"
	"github.com/onramp-net/onramp/l4proxy/edge/edgetest"
)

// TestTrafficCounts: a connector connection's bytes, and its tunnel's,
// are what the users sent each way: a TCP stream's (up and down differ)
// and a UDP flow's payloads. The tunnel's count keeps a connection's
// bytes after it is gone and adds the next one's; the global counter
// holds the streams' bytes.
func TestTrafficCounts(t *testing.T) {
	forEach(t, func(t *testing.T, proto string) {
		e := edgetest.Start(t, proto, "127.0.0.1", edge.Options{})
		const up, down = 100_000, 300_000
		origin := edgetest.ServeTCPOrigin(t, "127.0.0.1", func(c net.Conn) {
			if _, err := io.ReadFull(c, make([]byte, up)); err != nil {
				return
			}
			c.Write(bytes.Repeat([]byte("d"), down))
		})
		udpOrigin := edgetest.EchoUDP(t, "127.0.0.1", "echo:")
		rules := fmt.Sprintf("ingress:\n  - hostname: sink\n    service: tcp://%s\n  - hostname: dns\n    service: udp://%s\n  - service: http_status:404\n", origin, udpOrigin)
		one := func(o *connector.Options) { o.Connections = 1 }
		tcpAddr, udpAddr := e.ServeTCP("sink"), e.ServeUDP("dns")

		// stream sends up bytes, reads down bytes back.
		stream := func() {
			t.Helper()
			c := dial(t, tcpAddr)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(bytes.Repeat([]byte("u"), up)); err != nil {
				t.Fatal(err)
			}
			if n, err := io.ReadFull(c, make([]byte, down)); err != nil {
				t.Fatalf("user read %d bytes of %d: %v", n, down, err)
			}
			c.Close()
		}
		// flow sends datagrams until one is answered and returns the
		// bytes sent and received.
		flow := func() (sent, got uint64) {
			t.Helper()
			c, err := net.Dial("udp", udpAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, 2048)
			for range 20 {
				c.Write([]byte("hello"))
				sent += 5
				c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				if n, err := c.Read(buf); err == nil {
					got += uint64(n)
					break
				}
			}
			if got == 0 {
				t.Fatal("no UDP answer")
			}
			// Late answers of datagrams sent again.
			for {
				c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
				n, err := c.Read(buf)
				if err != nil {
					return sent, got
				}
				got += uint64(n)
			}
		}
		// wait polls until the connection (if any) and the tunnel hold
		// what is wanted: the edge counts a write after it returned, the
		// user may have read it before.
		wait := func(what string, conn, tun edge.TunnelBytes) {
			t.Helper()
			deadline := time.Now().Add(5 * time.Second)
			for {
				var c edge.TunnelBytes
				conns := e.Server.Connections()
				for _, ci := range conns {
					c.ToOrigin += ci.BytesToOrigin
					c.ToUser += ci.BytesToUser
				}
				tb := e.Server.TunnelBytes()[e.Token.TunnelID]
				if c == conn && tb == tun {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: the connections (%d) counted %+v, want %+v; the tunnel %+v, want %+v", what, len(conns), c, conn, tb, tun)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}

		r := e.StartConnector(rules, one)
		stream()
		sent, got := flow()
		first := edge.TunnelBytes{ToOrigin: up + sent, ToUser: down + got}
		wait("first connection", first, first)
		if g := edgetest.Metric(t, e.Registry, "onramp_edge_bytes_total", "to_origin"); g != up {
			t.Errorf("onramp_edge_bytes_total{to_origin} = %v, want %d (the stream's)", g, up)
		}
		if g := edgetest.Metric(t, e.Registry, "onramp_edge_bytes_total", "to_user"); g != down {
			t.Errorf("onramp_edge_bytes_total{to_user} = %v, want %d (the stream's)", g, down)
		}

		// The connection gone: the tunnel keeps its bytes.
		if err := r.Stop(); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); len(e.Server.Connections()) > 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the connector's connection did not go")
			}
		}
		wait("connection gone", edge.TunnelBytes{}, first)

		// A new connection counts from zero; the tunnel adds to its count.
		e.StartConnector(rules, one)
		stream()
		second := edge.TunnelBytes{ToOrigin: up, ToUser: down}
		wait("second connection", second, edge.TunnelBytes{ToOrigin: first.ToOrigin + up, ToUser: first.ToUser + down})
		if ids := e.Server.Connections(); len(ids) != 1 || ids[0].ID == 0 {
			t.Errorf("connections: %+v", ids)
		}
	})
}
