package connector_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l4proxy/connector"
	"github.com/onramp-net/onramp/l4proxy/edge"
	"github.com/onramp-net/onramp/l4proxy/edge/edgetest"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

var protos = []string{"quic", "http2"}

func forEach(t *testing.T, f func(t *testing.T, proto string)) {
	for _, p := range protos {
		t.Run(p, func(t *testing.T) { f(t, p) })
	}
}

// greeter is an origin that writes its name and a newline, then echoes.
func greeter(t *testing.T, name string) string {
	return edgetest.ServeTCPOrigin(t, "127.0.0.1", func(c net.Conn) {
		fmt.Fprintf(c, "%s\n", name)
		io.Copy(c, c)
	})
}

// client is one TCP connection of a user to the edge: echoed lines
// (roundTrip) or HTTP requests one after the other (do, get).
type client struct {
	t *testing.T
	c *net.TCPConn
	r *bufio.Reader
}

func connect(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return &client{t: t, c: c.(*net.TCPConn), r: bufio.NewReader(c)}
}

func (cl *client) line() string {
	cl.t.Helper()
	s, err := cl.r.ReadString('\n')
	if err != nil {
		cl.t.Fatalf("read line: %v (got %q)", err, s)
	}
	return strings.TrimSuffix(s, "\n")
}

func (cl *client) roundTrip(msg string) {
	cl.t.Helper()
	if _, err := fmt.Fprintf(cl.c, "%s\n", msg); err != nil {
		cl.t.Fatal(err)
	}
	if got := cl.line(); got != msg {
		cl.t.Fatalf("echo: got %q, want %q", got, msg)
	}
}

// TestReload: new streams follow the new rules, a live stream keeps its origin.
func TestReload(t *testing.T) {
	forEach(t, func(t *testing.T, proto string) {
		e := edgetest.Start(t, proto, "127.0.0.1", edge.Options{})
		one, two := greeter(t, "one"), greeter(t, "two")
		r := e.StartConnector("ingress:\n  - service: tcp://"+one+"\n", nil)
		addr := e.ServeTCP("svc")
		old := connect(t, addr)
		if got := old.line(); got != "one" {
			t.Fatalf("before reload: %q", got)
		}
		r.Reload(edgetest.Ingress(t, "ingress:\n  - service: tcp://"+two+"\n"))
		cur := connect(t, addr)
		if got := cur.line(); got != "two" {
			t.Fatalf("after reload: %q", got)
		}
		old.roundTrip("old stream still on origin one")
		cur.roundTrip("new stream on origin two")
	})
}

// TestShutdown: Shutdown drains; a live transfer finishes, new users go to
// the other connector; Run returns nil once done.
func TestShutdown(t *testing.T) {
	forEach(t, func(t *testing.T, proto string) {
		e := edgetest.Start(t, proto, "127.0.0.1", edge.Options{})
		echo := edgetest.EchoTCP(t, "127.0.0.1")
		rules := "ingress:\n  - service: tcp://" + echo + "\n"
		a := e.StartConnector(rules, nil)
		addr := e.ServeTCP("echo")
		live := connect(t, addr)
		live.roundTrip("first half")

		b := e.StartConnector(rules, nil)
		shut := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			shut <- a.Shutdown(ctx)
		}()
		// Wait until the edge sees a's connections draining.
		deadline := time.Now().Add(10 * time.Second)
		for draining(e.Server) < 2 {
			if time.Now().After(deadline) {
				t.Fatalf("edge sees %d draining connections, want 2", draining(e.Server))
			}
			time.Sleep(10 * time.Millisecond)
		}
		for i := range 5 {
			n := connect(t, addr)
			n.roundTrip(fmt.Sprintf("new user %d", i))
			n.c.Close()
		}
		if got := edgetest.Metric(t, b.Registry, "onramp_connector_streams_total", "tcp"); got != 5 {
			t.Errorf("connector b took %v streams, want 5", got)
		}
		select {
		case err := <-shut:
			t.Fatalf("Shutdown returned before the live stream ended: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		live.roundTrip("second half")
		live.c.CloseWrite()
		if rest, err := io.ReadAll(live.r); err != nil || len(rest) != 0 {
			t.Fatalf("after CloseWrite: %q %v", rest, err)
		}
		select {
		case err := <-shut:
			if err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Shutdown did not return after the last stream ended")
		}
		select {
		case <-a.Done:
			if err := a.Err(); err != nil {
				t.Fatalf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after Shutdown")
		}
		if a.Ready() {
			t.Error("Ready after Shutdown")
		}
	})
}

func draining(s *edge.Server) int {
	n := 0
	for _, ci := range s.Connections() {
		if ci.Draining {
			n++
		}
	}
	return n
}

// TestShutdownDeadline: a stream that does not end is reset when the
// Shutdown context expires.
func TestShutdownDeadline(t *testing.T) {
	e := edgetest.Start(t, "quic", "127.0.0.1", edge.Options{})
	echo := edgetest.EchoTCP(t, "127.0.0.1")
	a := e.StartConnector("ingress:\n  - service: tcp://"+echo+"\n", nil)
	live := connect(t, e.ServeTCP("echo"))
	live.roundTrip("hello")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := a.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want deadline exceeded", err)
	}
	live.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(live.r)
	if err == nil && len(b) != 0 {
		t.Fatalf("read %q after reset", b)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the user connection was not closed")
	}
	if err := a.Err(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestDropTunnel: the tunnel is deleted at the edge and dropped; the
// connector's redial is refused and Run returns the *tunnel.AuthError.
func TestDropTunnel(t *testing.T) {
	forEach(t, func(t *testing.T, proto string) {
		e := edgetest.Start(t, proto, "127.0.0.1", edge.Options{})
		r := e.StartConnector("ingress:\n  - service: http_status:404\n", nil)
		e.Auth.Delete(e.Token.TunnelID)
		e.Server.DropTunnel(e.Token.TunnelID)
		select {
		case <-r.Done:
			err := r.Err()
			var ae *tunnel.AuthError
			if !errors.As(err, &ae) || ae.Reason != tunnel.AuthTunnelDeleted {
				t.Fatalf("Run = %v, want an AuthError (tunnel deleted)", err)
			}
			t.Logf("Run: %v", err)
		case <-time.After(15 * time.Second):
			t.Fatal("Run did not return after the tunnel was dropped")
		}
		// The edge closes an HTTP/2 connection within a second of sending
		// the reason (at once when the connector closes it on reading it).
		for deadline := time.Now().Add(2 * time.Second); len(e.Server.Connections()) != 0 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		if n := len(e.Server.Connections()); n != 0 {
			t.Errorf("edge still has %d connections", n)
		}
		if v := edgetest.Metric(t, r.Registry, "onramp_connector_errors_total", "auth"); v < 1 {
			t.Errorf("errors{auth} = %v", v)
		}
	})
}

// TestRotatedToken: the tunnel's token is rotated at the edge; the
// connector of the old token stops at once, saying why, and does not
// redial; its redial would be refused, while a connector with the new
// token joins and serves.
func TestRotatedToken(t *testing.T) {
	forEach(t, func(t *testing.T, proto string) {
		e := edgetest.Start(t, proto, "127.0.0.1", edge.Options{})
		rules := fmt.Sprintf("ingress:\n  - service: tcp://%s\n", greeter(t, "origin"))
		old := e.StartConnector(rules, nil)
		start := time.Now()
		rotated := e.Auth.Rotate(e.Token)
		if n := e.Server.Revalidate(e.Token.TunnelID); n != 2 {
			t.Errorf("Revalidate closed %d connections, want 2", n)
		}
		select {
		case <-old.Done:
		case <-time.After(5 * time.Second):
			t.Fatal("the old token's connector still runs")
		}
		err := old.Err()
		var ae *tunnel.AuthError
		if !errors.As(err, &ae) || ae.Reason != tunnel.AuthRotated || !strings.Contains(err.Error(), "token rotated") {
			t.Fatalf("Run = %v, want the AuthError of a rotated token", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("the old connector stopped after %v; want at once", d)
		}
		t.Logf("old connector: %v", err)
		if v := edgetest.Metric(t, old.Registry, "onramp_connector_errors_total", "auth"); v < 1 {
			t.Errorf("errors{auth} = %v", v)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := tunnel.Dial(ctx, proto, e.Token.Edges[0], e.Token, [16]byte{1}, edgetest.TunnelConfig()); !errors.As(err, &ae) || ae.Reason != tunnel.AuthDenied {
			t.Errorf("dial with the old token: %v, want the refusal", err)
		}
		e.StartConnector(rules, func(o *connector.Options) { o.Token = rotated })
		c := connect(t, e.ServeTCP("svc"))
		if line := c.line(); line != "origin" {
			t.Errorf("through the new token's connector: %q", line)
		}
	})
}

// TestBadSecret: a wrong secret makes Run return at once, with the one
// refusal the edge gives for an unknown tunnel or a wrong secret.
func TestBadSecret(t *testing.T) {
	e := edgetest.Start(t, "quic", "127.0.0.1", edge.Options{})
	tok := e.Token
	tok.Secret[0] ^= 1
	c, err := connector.New(connector.Options{Token: tok, Protocol: "auto", Connections: 2,
		Ingress: edgetest.Ingress(t, "ingress:\n  - service: http_status:404\n"), Logger: edgetest.Logger(), Tunnel: edgetest.TunnelConfig()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = c.Run(ctx)
	var ae *tunnel.AuthError
	if !errors.As(err, &ae) || ae.Reason != tunnel.AuthDenied {
		t.Fatalf("Run = %v, want an AuthError (unknown tunnel or bad secret)", err)
	}
}

// TestNew checks option validation.
func TestNew(t *testing.T) {
	cfg := edgetest.Ingress(t, "ingress:\n  - service: http_status:404\n")
	tok := tunnel.Token{Edges: []string{"127.0.0.1:1"}}
	for _, o := range []connector.Options{
		{Token: tok},
		{Token: tunnel.Token{}, Ingress: cfg},
		{Token: tok, Ingress: cfg, Protocol: "udp"},
	} {
		if _, err := connector.New(o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}

// TestAutoFallback: with "auto" and no QUIC listener, the connector falls
// back to HTTP/2; when QUIC appears on the same port, the HTTP/2
// connections are replaced by QUIC ones.
func TestAutoFallback(t *testing.T) {
	defer connector.SetQUICRetryAfter(500 * time.Millisecond)()
	e := edgetest.Start(t, "http2", "127.0.0.1", edge.Options{})
	echo := edgetest.EchoTCP(t, "127.0.0.1")
	r := e.StartConnector("ingress:\n  - service: tcp://"+echo+"\n", func(o *connector.Options) {
		o.Protocol = "auto"
		o.Tunnel.QUICHandshakeTimeout = 300 * time.Millisecond
	})
	for _, ci := range r.Connections() {
		if ci.Protocol != "http2" {
			t.Fatalf("connection over %s, want http2", ci.Protocol)
		}
	}
	addr := e.ServeTCP("echo")
	live := connect(t, addr)
	live.roundTrip("over http2")

	// QUIC on the same port number.
	ql, err := tunnel.ListenQUIC(e.Listener.Addr().String(), e.Cert, e.Auth, edgetest.TunnelConfig())
	if err != nil {
		t.Skipf("cannot listen for QUIC on the HTTP/2 port: %v", err)
	}
	defer ql.Close()
	e.Go(func() { e.Server.ServeConnectors(e.Ctx, ql) })
	deadline := time.Now().Add(15 * time.Second)
	for {
		quic := 0
		for _, ci := range r.Connections() {
			if ci.Protocol == "quic" {
				quic++
			}
		}
		if quic == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connections: %+v, want 2 over quic", r.Connections())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The stream opened over HTTP/2 survived the swap (its connection
	// drains until it ends).
	live.roundTrip("still there")
	n := connect(t, addr)
	n.roundTrip("over quic")
}

// udpExchange sends msg from c until the answer comes (datagrams may be
// lost while a flow moves) and returns it, or "" after tries attempts.
func udpExchange(c net.Conn, msg string, tries int) string {
	buf := make([]byte, 2048)
	for range tries {
		c.Write([]byte(msg))
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, err := c.Read(buf); err == nil {
			return string(buf[:n])
		}
	}
	return ""
}

// TestUDPFailover: a flow follows the tunnel to the other connector when
// the one carrying it shuts down.
func TestUDPFailover(t *testing.T) {
	forEach(t, func(t *testing.T, proto string) {
		e := edgetest.Start(t, proto, "127.0.0.1", edge.Options{})
		origin := edgetest.EchoUDP(t, "127.0.0.1", "echo:")
		rules := "ingress:\n  - hostname: dns.internal\n    service: udp://" + origin + "\n  - service: http_status:404\n"
		a := e.StartConnector(rules, nil)
		c, err := net.Dial("udp", e.ServeUDP("dns.internal"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if got := udpExchange(c, "one", 20); got != "echo:one" {
			t.Fatalf("got %q", got)
		}
		b := e.StartConnector(rules, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if got := udpExchange(c, "two", 20); got != "echo:two" {
			t.Fatalf("after failover: got %q", got)
		}
		if v := edgetest.Metric(t, b.Registry, "onramp_connector_udp_flows_total", ""); v != 1 {
			t.Errorf("connector b opened %v flows, want 1", v)
		}
		if v := edgetest.Metric(t, e.Registry, "onramp_edge_udp_flows_total", ""); v != 1 {
			t.Errorf("edge opened %v flows, want 1 (the same flow moved)", v)
		}
	})
}

// TestUDPNoRule: a flow whose service has no udp rule is closed by the
// connector, and the edge counts the refusal.
func TestUDPNoRule(t *testing.T) {
	e := edgetest.Start(t, "quic", "127.0.0.1", edge.Options{})
	r := e.StartConnector("ingress:\n  - service: http_status:404\n", nil)
	c, err := net.Dial("udp", e.ServeUDP("nothing.internal"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := udpExchange(c, "hello", 3); got != "" {
		t.Fatalf("answer %q", got)
	}
	if v := edgetest.Metric(t, r.Registry, "onramp_connector_errors_total", "no_rule"); v < 1 {
		t.Errorf("connector errors{no_rule} = %v", v)
	}
	if v := edgetest.Metric(t, e.Registry, "onramp_edge_errors_total", "refused"); v < 1 {
		t.Errorf("edge errors{refused} = %v", v)
	}
}

// TestEdgeFailover: a connection whose edge is down moves on to the next
// edge address of the token.
func TestEdgeFailover(t *testing.T) {
	e := edgetest.Start(t, "http2", "127.0.0.1", edge.Options{})
	dead := edgetest.ClosedPort(t, "127.0.0.1")
	r := e.StartConnector("ingress:\n  - service: http_status:404\n", func(o *connector.Options) {
		o.Token.Edges = []string{dead, e.Listener.Addr().String()}
	})
	for _, ci := range r.Connections() {
		if ci.Edge != e.Listener.Addr().String() {
			t.Errorf("connection to %s", ci.Edge)
		}
	}
}
