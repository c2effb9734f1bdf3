package edge_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l4proxy/edge"
	"github.com/onramp-net/onramp/l4proxy/edge/edgetest"
)

// namedEcho is a TCP origin that says its name on a line, then echoes.
func namedEcho(t *testing.T, name string) string {
	return edgetest.ServeTCPOrigin(t, "127.0.0.1", func(c net.Conn) {
		fmt.Fprintf(c, "%s\n", name)
		io.Copy(c, c)
	})
}

// liveStream is a user connection that keeps echoing through the edge
// until stopped, counting its round trips and keeping its first error.
type liveStream struct {
	c      net.Conn
	br     *bufio.Reader
	origin string // the name the origin said
	trips  atomic.Int64
	err    error
	done   chan struct{}
	stop   atomic.Bool
}

func startLive(t *testing.T, addr string) *liveStream {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	l := &liveStream{c: c, br: bufio.NewReader(c), done: make(chan struct{})}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := l.br.ReadString('\n')
	if err != nil {
		t.Fatalf("live stream to %s: no greeting: %v", addr, err)
	}
	l.origin = strings.TrimSpace(line)
	go func() {
		defer close(l.done)
		buf := make([]byte, 64)
		for i := 0; !l.stop.Load(); i++ {
			msg := fmt.Sprintf("round trip %d\n", i)
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, msg); err != nil {
				l.err = err
				return
			}
			if _, err := io.ReadFull(l.br, buf[:len(msg)]); err != nil || string(buf[:len(msg)]) != msg {
				l.err = fmt.Errorf("round trip %d: got %q, %v", i, buf[:len(msg)], err)
				return
			}
			l.trips.Add(1)
			time.Sleep(time.Millisecond)
		}
	}()
	return l
}

// end stops the stream and returns its first error.
func (l *liveStream) end() error {
	l.stop.Store(true)
	<-l.done
	return l.err
}

// greeting dials addr and returns the origin's name, or the error of a
// refused connection.
func greeting(addr string) (string, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// TestReloadSwapsWhileStreamsRun changes a running Server's limits, a TCP
// binding's target and the routes again and again while user streams
// run through it, then closes the binding's listener: no live stream
// breaks, new connections follow each change at once, and a closed
// listener lets its connections finish. Run with -race.
func TestReloadSwapsWhileStreamsRun(t *testing.T) {
	e := edgetest.Start(t, "quic", "127.0.0.1", edge.Options{MaxConnsPerSource: 100})
	originA, originB := namedEcho(t, "A"), namedEcho(t, "B")
	e.StartConnector(fmt.Sprintf("ingress:\n  - {hostname: a.internal, service: \"tcp://%s\"}\n  - {hostname: b.internal, service: \"tcp://%s\"}\n  - service: http_status:404\n",
		originA, originB), nil)

	ln := e.Listen()
	v, err := edge.NewBindingVar(edge.Binding{Tunnel: edgetest.TunnelName, Service: "a.internal"})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- e.Server.ServeTCPVar(e.Ctx, ln, v) }()
	addr := ln.Addr().String()

	var live []*liveStream
	for range 4 {
		l := startLive(t, addr)
		if l.origin != "A" {
			t.Fatalf("a stream on the binding reached %q, want A", l.origin)
		}
		live = append(live, l)
	}

	// Swap everything, over and over, while the streams run and new users
	// connect.
	var wg sync.WaitGroup
	stopDialing := make(chan struct{})
	var dialErr atomic.Value
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stopDialing:
				return
			default:
			}
			if name, err := greeting(addr); err != nil || (name != "A" && name != "B") {
				dialErr.Store(fmt.Sprintf("%q, %v", name, err))
			}
		}
	}()
	for i := range 200 {
		svc, host := "a.internal", "x.example.test"
		if i%2 == 1 {
			svc, host = "b.internal", "y.example.test"
		}
		if err := v.Store(edge.Binding{Tunnel: edgetest.TunnelName, Service: svc}); err != nil {
			t.Fatal(err)
		}
		e.Server.SetLimits(edge.Limits{MaxConnsPerSource: 50 + i%10, IdleTimeout: time.Minute})
		if err := e.Server.SetRoutes([]edge.Route{{Hostname: host, Tunnel: edgetest.TunnelName}}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	close(stopDialing)
	wg.Wait()
	if s := dialErr.Load(); s != nil {
		t.Errorf("a user connecting during the swaps got %s", s)
	}

	// The binding sends new users to its new target; the live streams stay
	// on theirs.
	if err := v.Store(edge.Binding{Tunnel: edgetest.TunnelName, Service: "b.internal"}); err != nil {
		t.Fatal(err)
	}
	if name, err := greeting(addr); err != nil || name != "B" {
		t.Errorf("after the binding moved to b.internal a new user reached %q, %v; want B", name, err)
	}

	// A limit lowered below what is open: the open streams go on, a new
	// connection is reset and counted; raised again, it is served.
	refused := func() float64 {
		return edgetest.Metric(t, e.Registry, "onramp_edge_user_connections_refused_total", "maxConnsPerSource")
	}
	before := refused()
	e.Server.SetLimits(edge.Limits{MaxConnsPerSource: 2})
	if got := e.Server.Limits().MaxConnsPerSource; got != 2 {
		t.Fatalf("Limits().MaxConnsPerSource = %d after SetLimits(2)", got)
	}
	if name, err := greeting(addr); err == nil {
		t.Errorf("with 4 streams open and maxConnsPerSource 2 a new user was served (%q)", name)
	}
	if refused() != before+1 {
		t.Errorf("refusals by maxConnsPerSource: %v, want %v", refused(), before+1)
	}
	e.Server.SetLimits(edge.Limits{})
	if got := e.Server.Limits().MaxConnsPerSource; got != edge.DefaultMaxConnsPerSource {
		t.Errorf("SetLimits(zero) left maxConnsPerSource %d, want the default %d", got, edge.DefaultMaxConnsPerSource)
	}
	if name, err := greeting(addr); err != nil || name != "B" {
		t.Errorf("with the limit raised again a new user got %q, %v", name, err)
	}

	// The listener closed (its binding removed): new users are refused,
	// the live streams go on, and ServeTCPVar returns nil once they end.
	trips := make([]int64, len(live))
	for i, l := range live {
		trips[i] = l.trips.Load()
	}
	ln.Close()
	if _, err := net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
		t.Error("a closed binding's port still accepts")
	}
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-served:
		t.Fatalf("ServeTCPVar returned (%v) while its connections still run", err)
	default:
	}
	for i, l := range live {
		if l.trips.Load() <= trips[i] {
			t.Errorf("live stream %d made no round trip after its listener closed", i)
		}
		if err := l.end(); err != nil {
			t.Errorf("live stream %d broke: %v", i, err)
		}
		l.c.Close()
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("ServeTCPVar after its listener closed: %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("ServeTCPVar did not return after its last connection ended")
	}
}

// TestReloadRouteRemovedKeepsConnection removes a route while an HTTP
// keep-alive connection routed by it is open: that connection's next
// request still reaches the origin; a new connection gets 404.
func TestReloadRouteRemovedKeepsConnection(t *testing.T) {
	e := edgetest.Start(t, "quic", "127.0.0.1", edge.Options{})
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "origin: %s", r.URL.Path)
	}))
	t.Cleanup(web.Close)
	e.StartConnector(fmt.Sprintf("ingress:\n  - {hostname: web.test, service: \"%s\"}\n  - service: http_status:404\n", web.URL), nil)
	e.Route("web.test")
	addr := e.ServeHTTP()

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	get := func(path string) (int, string, error) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: web.test\r\n\r\n", path); err != nil {
			return 0, "", err
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	if code, body, err := get("/one"); err != nil || code != 200 || body != "origin: /one" {
		t.Fatalf("before: %d %q %v", code, body, err)
	}
	if err := e.Server.SetRoutes(nil); err != nil {
		t.Fatal(err)
	}
	if code, body, err := get("/two"); err != nil || code != 200 || body != "origin: /two" {
		t.Errorf("the open connection after its route was removed: %d %q %v; want the origin's answer", code, body, err)
	}
	resp, err := http.Get("http://" + addr + "/three")
	if err == nil {
		resp.Body.Close()
	}
	if err != nil || resp.StatusCode != 404 {
		t.Errorf("a new connection after the route was removed: %v %v; want 404", resp, err)
	}
}

// TestReloadUDPBinding moves a UDP binding to another service: a user's
// open flow stays on the old one, a new user's flow opens on the new one;
// closing the socket ends ServeUDPVar with nil.
func TestReloadUDPBinding(t *testing.T) {
	e := edgetest.Start(t, "quic", "127.0.0.1", edge.Options{})
	a, b := edgetest.EchoUDP(t, "127.0.0.1", "A:"), edgetest.EchoUDP(t, "127.0.0.1", "B:")
	e.StartConnector(fmt.Sprintf("ingress:\n  - {hostname: a.internal, service: \"udp://%s\"}\n  - {hostname: b.internal, service: \"udp://%s\"}\n  - service: http_status:404\n", a, b), nil)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	v, _ := edge.NewBindingVar(edge.Binding{Tunnel: edgetest.TunnelName, Service: "a.internal"})
	served := make(chan error, 1)
	go func() { served <- e.Server.ServeUDPVar(e.Ctx, pc, v) }()
	dial := func() net.Conn {
		c, err := net.Dial("udp", pc.LocalAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	ask := func(c net.Conn) string {
		buf := make([]byte, 100)
		for range 20 {
			_, _ = c.Write([]byte("hi"))
			_ = c.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
			if n, err := c.Read(buf); err == nil {
				return string(buf[:n])
			}
		}
		return "(no answer)"
	}
	old := dial()
	if got := ask(old); got != "A:hi" {
		t.Fatalf("first flow: %q, want A:hi", got)
	}
	if err := v.Store(edge.Binding{Tunnel: edgetest.TunnelName, Service: "b.internal"}); err != nil {
		t.Fatal(err)
	}
	if got := ask(old); got != "A:hi" {
		t.Errorf("the open flow after the binding moved: %q, want A:hi (it stays)", got)
	}
	if got := ask(dial()); got != "B:hi" {
		t.Errorf("a new flow after the binding moved: %q, want B:hi", got)
	}
	pc.Close()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("ServeUDPVar after its socket closed: %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("ServeUDPVar did not return after its socket closed")
	}
}

// TestValidateRoutes refuses what SetRoutes refuses, without a Server.
func TestValidateRoutes(t *testing.T) {
	if err := edge.ValidateRoutes([]edge.Route{{Hostname: "a.test", Tunnel: "t"}, {Hostname: "*.b.test", Origin: "127.0.0.1:1"}}); err != nil {
		t.Errorf("good routes: %v", err)
	}
	for _, bad := range [][]edge.Route{
		{{Hostname: "a..test", Tunnel: "t"}},
		{{Hostname: "a.test"}},
		{{Hostname: "a.test", Tunnel: "t"}, {Hostname: "A.test", Tunnel: "u"}},
	} {
		if err := edge.ValidateRoutes(bad); err == nil {
			t.Errorf("ValidateRoutes(%v) = nil", bad)
		}
	}
	if _, err := edge.NewBindingVar(edge.Binding{Tunnel: "t", Service: strings.Repeat("x", 256)}); err == nil {
		t.Error("a binding with a 256-byte service was taken")
	}
	v, _ := edge.NewBindingVar(edge.Binding{Tunnel: "t", Service: "s"})
	if err := v.Store(edge.Binding{Tunnel: "t", Service: strings.Repeat("x", 256)}); err == nil || v.Load().Service != "s" {
		t.Errorf("Store of a bad binding: %v, binding now %+v; want an error and the old binding", err, v.Load())
	}
}
