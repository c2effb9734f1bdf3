package testnet_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/onramp-net/onramp/l4proxy/tunnel"
	"github.com/onramp-net/onramp/testnet"
)

// newTunnelWorldYAML is newTunnelWorld with edgeYAML as the routes,
// bindings and limits of the edge's configuration.
func newTunnelWorldYAML(t *testing.T, edgeYAML string) *tunnelWorld {
	t.Helper()
	n := testnet.New(t, testnet.Tunnel())
	origins, err := n.Node("origin").ServeOrigins()
	if err != nil {
		t.Fatal(err)
	}
	rig, err := testnet.StartTunnelRig(context.Background(), n, testnet.RigOptions{Dir: t.TempDir(), EdgeYAML: edgeYAML})
	if err != nil {
		t.Fatal(err)
	}
	return &tunnelWorld{t: t, n: n, rig: rig, origins: origins, user: n.Node("user"),
		edge4: n.Addr("edge", "user", false).String(), edge6: n.Addr("edge", "user", true).String()}
}

// secondSource puts 198.18.10.3 on the user node: a user who is not the
// attacker (198.18.10.2, the node's first address).
func secondSource(t *testing.T, w *tunnelWorld) netip.Addr {
	t.Helper()
	a := netip.MustParseAddr("198.18.10.3")
	if err := w.user.AddAddress(context.Background(), "eth0", netip.PrefixFrom(a, 24)); err != nil {
		t.Fatal(err)
	}
	return a
}

// edgeMemory logs and returns the edge's resident memory and its peak.
func edgeMemory(t *testing.T, w *tunnelWorld, when string) (rss, peak int64) {
	t.Helper()
	rss, peak, err := w.rig.Edge.MemStatus()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("edge memory %s: RSS %s, peak %s", when, testnet.MiB(rss), testnet.MiB(peak))
	return rss, peak
}

// TestIdleConnectionsFromOneSource plays one host that opens 10,000 idle
// connections, half to the HTTP listener and half to a TCP binding of the
// tunnel, and holds them. With the default limits the edge turns them away
// at accept once the source holds limits.maxConnsPerSource (256), before
// reading or allocating anything: a user from another address of the same
// link keeps being served by HTTP and TCP throughout, the tunnel's streams
// stay far from its limit, the edge stays under 200 MiB, and the refusals
// are counted and logged once. A second edge with short limits.idleTimeout
// and headerTimeout closes an idle proxied connection and a silent one.
func TestIdleConnectionsFromOneSource(t *testing.T) {
	t.Run("attack", func(t *testing.T) {
		const idle = 10000 // the attacker's connections, half to each listener
		if err := testnet.RaiseFileLimit(idle + 4096); err != nil {
			t.Fatal(err)
		}
		w := newTunnelWorld(t)
		w.connector("conn", "quic", "")
		other := secondSource(t, w)
		httpAddr, echoAddr := w.addr(false, testnet.EdgeHTTPPort), w.addr(false, testnet.EdgeEchoPort)
		served := func() error {
			code, body, err := w.user.HTTPGetFrom(other, httpAddr, "web.demo.test", "/other-source")
			if err != nil {
				return err
			}
			if code != 200 || !strings.Contains(body, "GET /other-source") {
				return fmt.Errorf("HTTP %d %q", code, body)
			}
			return w.user.EchoFrom(other, echoAddr, "from another source")
		}
		if err := served(); err != nil {
			t.Fatalf("user from %s before the attack: %v", other, err)
		}
		edgeMemory(t, w, "before the attack")

		loop := testnet.StartLoop("user from 198.18.10.3 (HTTP GET and TCP echo)", 100*time.Millisecond, served)
		defer loop.Stop()
		start := time.Now()
		conns, reset, err := w.user.HoldConns([]string{httpAddr, echoAddr}, idle)
		t.Cleanup(func() {
			for _, c := range conns {
				c.Close()
			}
		})
		if err != nil {
			t.Fatalf("attacker: %v (after %d connections)", err, len(conns)+reset)
		}
		t.Logf("attacker 198.18.10.2: %d idle connections (HTTP listener and TCP binding in turn) in %v, %d of them reset before connect returned",
			idle, time.Since(start).Round(time.Millisecond), reset)
		open := testnet.StillOpen(conns, 2*time.Second)
		t.Logf("attacker: %d of its %d connections still open", open, idle)
		if open > 256 {
			t.Errorf("the edge holds %d idle connections of one source, want at most limits.maxConnsPerSource (256)", open)
		}
		metrics, err := w.rig.EdgeMetrics()
		if err != nil {
			t.Fatal(err)
		}
		streams := testnet.MetricValue(metrics, "onramp_edge_streams_open", `kind="tcp"`)
		t.Logf("tunnel streams open for the TCP binding: %v", streams)
		if streams > 256 {
			t.Errorf("%v TCP streams open in the tunnel, want at most the source's 256 connections", streams)
		}
		// Hold the attack past the header timeout (10s), the user loop running.
		time.Sleep(10 * time.Second)
		_, peak := edgeMemory(t, w, "under the attack")
		if peak > 200<<20 {
			t.Errorf("edge peak RSS %s, want under 200 MiB", testnet.MiB(peak))
		}
		loop.Stop()
		t.Log(loop)
		if ok, _ := loop.Counts(); loop.Rate() < 0.99 || ok < 20 {
			t.Errorf("the other user was not served throughout the attack: %v", loop)
		}

		// What turned the idle connections away: the per-source limit, at accept.
		if metrics, err = w.rig.EdgeMetrics(); err != nil {
			t.Fatal(err)
		}
		perSource := testnet.MetricValue(metrics, "onramp_edge_user_connections_refused_total", `limit="maxConnsPerSource"`)
		global := testnet.MetricValue(metrics, "onramp_edge_user_connections_refused_total", `limit="maxConns"`)
		t.Logf("refused at accept: %v by limits.maxConnsPerSource, %v by limits.maxConns", perSource, global)
		if perSource < float64(idle-256) || global != 0 {
			t.Errorf("refusals: %v by maxConnsPerSource (want at least %d), %v by maxConns (want 0)", perSource, idle-256, global)
		}
		line := "limits.maxConnsPerSource (256) reached for 198.18.10.2"
		if n := strings.Count(w.rig.Edge.Output(), line); n != 1 {
			t.Errorf("the edge logged %q %d times, want once (rate-limited)", line, n)
		}
	})

	t.Run("timeouts", func(t *testing.T) {
		w := newTunnelWorldYAML(t, testnet.DefaultEdgeYAML("demo")+"limits: {idleTimeout: 2s, headerTimeout: 2s}\n")
		w.connector("conn", "quic", "")
		echoAddr := w.addr(false, testnet.EdgeEchoPort)
		closedAfter := func(c net.Conn) (time.Duration, error) {
			start := time.Now()
			_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
			_, err := io.Copy(io.Discard, c)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return 0, fmt.Errorf("still open after 15s")
			}
			return time.Since(start), nil
		}
		// A proxied connection: one echo, then silence.
		routed, err := w.user.Dial("tcp", echoAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer routed.Close()
		_ = routed.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(routed, "ping"); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(routed, make([]byte, 4)); err != nil {
			t.Fatal(err)
		}
		// A connection that keeps talking outlives the idle timeout.
		talker, err := w.user.Dial("tcp", echoAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer talker.Close()
		talked := make(chan error, 1)
		go func() {
			for range 8 {
				_ = talker.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.WriteString(talker, "tick"); err != nil {
					talked <- err
					return
				}
				if _, err := io.ReadFull(talker, make([]byte, 4)); err != nil {
					talked <- err
					return
				}
				time.Sleep(500 * time.Millisecond)
			}
			talked <- nil
		}()
		d, err := closedAfter(routed)
		if err != nil || d < 1500*time.Millisecond || d > 8*time.Second {
			t.Errorf("idle proxied connection closed after %v (%v), want about limits.idleTimeout (2s)", d, err)
		} else {
			t.Logf("idle proxied connection closed after %v (limits.idleTimeout 2s)", d.Round(10*time.Millisecond))
		}
		if err := <-talked; err != nil {
			t.Errorf("a connection that kept talking for 4s was cut: %v", err)
		}
		// A connection that sends no head.
		silent, err := w.user.Dial("tcp", w.addr(false, testnet.EdgeHTTPPort))
		if err != nil {
			t.Fatal(err)
		}
		defer silent.Close()
		d, err = closedAfter(silent)
		if err != nil || d < 1500*time.Millisecond || d > 8*time.Second {
			t.Errorf("connection without a head closed after %v (%v), want about limits.headerTimeout (2s)", d, err)
		} else {
			t.Logf("connection without a head closed after %v (limits.headerTimeout 2s)", d.Round(10*time.Millisecond))
		}
	})
}

// flood runs attacker goroutines until stopped and counts what they did.
type flood struct {
	stop chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	n    map[string]int
}

func newFlood() *flood { return &flood{stop: make(chan struct{}), n: map[string]int{}} }

func (f *flood) count(what string) {
	f.mu.Lock()
	f.n[what]++
	f.mu.Unlock()
}

func (f *flood) stopped() bool {
	select {
	case <-f.stop:
		return true
	default:
		return false
	}
}

// pause waits d, or less if the flood stops.
func (f *flood) pause(d time.Duration) {
	select {
	case <-f.stop:
	case <-time.After(d):
	}
}

// run runs n copies of op in a loop until the flood stops.
func (f *flood) run(n int, op func()) {
	for range n {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			for !f.stopped() {
				op()
			}
		}()
	}
}

func (f *flood) end() string {
	close(f.stop)
	f.wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	return fmt.Sprint(f.n)
}

// hold waits until c is closed by the edge or the flood stops, and tells
// whether the edge closed it at once (within 200ms).
func (f *flood) hold(c net.Conn) (atOnce bool) {
	start := time.Now()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, c)
		close(done)
	}()
	select {
	case <-done:
	case <-f.stop:
	}
	c.Close()
	<-done
	return time.Since(start) < 200*time.Millisecond
}

// TestTunnelListenerHandshakeFlood floods the edge's tunnel port from one
// source (198.18.10.2) with work that never authenticates: QUIC handshakes
// that never send a proof, TCP connections that never start TLS, TLS
// handshakes stalled in the ClientHello, plain HTTP at the TLS port, and
// connectors with a wrong secret or an unknown tunnel. Meanwhile the
// connector of another tunnel is restarted, over QUIC and then over
// HTTP/2, and must reconnect and serve its users; the users of the first
// tunnel are served throughout. limits.quicRetryAbove is 8 in this edge's
// configuration, so the reconnecting QUIC connector goes through a Retry.
// The failed authentications are counted by reason, the attempts over
// limits.maxHandshakesPerSource refused and counted, and the edge's memory
// printed.
func TestTunnelListenerHandshakeFlood(t *testing.T) {
	ctx := context.Background()
	yaml := strings.Replace(testnet.DefaultEdgeYAML("demo"), "routes:\n",
		"routes:\n  - {hostname: \"*.other.test\", tunnel: other}\n", 1) + "limits: {quicRetryAbove: 8}\n"
	w := newTunnelWorldYAML(t, yaml)
	w.connector("conn", "quic", "")
	other := secondSource(t, w)
	otherTok, err := w.rig.AddTunnel(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	otherIngress := fmt.Sprintf("ingress:\n  - {hostname: \"*.other.test\", service: \"http://198.18.30.2:%d\"}\n  - service: \"http_status:404\"\n", testnet.OriginHTTP)
	startOther := func(proto string) (*testnet.Connector, time.Duration) {
		start := time.Now()
		c, err := w.rig.StartTunnelConnector(w.n.Node("conn"), otherTok, "other", proto, otherIngress, "--metrics", "127.0.0.1:9201")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.WaitReady(30 * time.Second); err != nil {
			t.Fatalf("connector of tunnel other (%s): %v\n%s", proto, err, c.Output())
		}
		return c, time.Since(start)
	}
	otherConn, _ := startOther("quic")
	httpAddr := w.addr(false, testnet.EdgeHTTPPort)
	get := func(host string) func() error {
		return func() error {
			code, body, err := w.user.HTTPGetFrom(other, httpAddr, host, "/flood")
			if err != nil {
				return err
			}
			if code != 200 || !strings.Contains(body, "GET /flood host="+host) {
				return fmt.Errorf("HTTP %d %q", code, body)
			}
			return nil
		}
	}
	if err := get("web.other.test")(); err != nil {
		t.Fatalf("user of tunnel other before the flood: %v", err)
	}
	edgeMemory(t, w, "before the flood")

	tok, err := tunnel.ParseToken(w.rig.Token)
	if err != nil {
		t.Fatal(err)
	}
	badSecret, unknown := tok, tok
	badSecret.Secret[0] ^= 0xff
	_, _ = rand.Read(unknown.TunnelID[:])
	tunnelAddr := w.addr(false, testnet.EdgeTunnelPort)
	udpAddr, err := net.ResolveUDPAddr("udp", tunnelAddr)
	if err != nil {
		t.Fatal(err)
	}

	demoLoop := testnet.StartLoop("users of tunnel demo from 198.18.10.3", 200*time.Millisecond, get("web.demo.test"))
	defer demoLoop.Stop()
	f := newFlood()
	defer func() {
		if !f.stopped() {
			f.end()
		}
	}()
	// QUIC handshakes that complete TLS and never send a proof.
	f.run(48, func() {
		var udp *net.UDPConn
		if err := w.user.Do(func() (err error) { udp, err = net.ListenUDP("udp4", nil); return err }); err != nil {
			t.Error(err)
			f.pause(time.Second)
			return
		}
		defer udp.Close()
		tr := &quic.Transport{Conn: udp}
		defer tr.Close()
		for !f.stopped() {
			dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			qc, err := tr.Dial(dctx, udpAddr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{tunnel.ALPNQUIC}},
				&quic.Config{HandshakeIdleTimeout: 5 * time.Second})
			cancel()
			if err != nil {
				f.count("quic refused")
				f.pause(100 * time.Millisecond)
				continue
			}
			f.count("quic held")
			select {
			case <-qc.Context().Done():
			case <-f.stop:
				qc.CloseWithError(0, "")
			}
		}
	})
	// TCP connections that never start TLS, and TLS stalled in the ClientHello.
	stall := func(what string, first []byte) func() {
		return func() {
			c, err := w.user.Dial("tcp", tunnelAddr)
			if err != nil {
				// Reset before the connect returned: refused at once.
				f.count(what + " refused")
				f.pause(100 * time.Millisecond)
				return
			}
			if len(first) > 0 {
				_, _ = c.Write(first)
			}
			if f.hold(c) {
				f.count(what + " refused")
				f.pause(100 * time.Millisecond)
			} else {
				f.count(what + " held")
			}
		}
	}
	f.run(48, stall("tcp", nil))
	f.run(16, stall("tls", []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")))
	// Plain HTTP at the TLS port: a TLS failure.
	f.run(1, func() {
		stall("garbage", []byte("GET / HTTP/1.1\r\nHost: edge\r\n\r\n"))()
		f.pause(200 * time.Millisecond)
	})
	// Connectors with a wrong secret, or the token of no tunnel, from the
	// connector host (another source than the flood's: from the flood's
	// own source, limits.maxHandshakesPerSource turns nearly all of them
	// away before authentication, and the reasons below would go uncounted).
	connNode := w.n.Node("conn")
	f.run(2, func() {
		for _, proto := range []string{"quic", "http2"} {
			for _, bad := range []tunnel.Token{badSecret, unknown} {
				err := connNode.Do(func() error {
					dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					defer cancel()
					c, err := tunnel.Dial(dctx, proto, tok.Edges[0], bad, [16]byte{0xa7}, nil)
					if err == nil {
						c.CloseWithError(0, "")
					}
					return err
				})
				if err == nil {
					t.Errorf("a connector with a bad token (%s) authenticated", proto)
				}
				f.count("bad token " + proto)
				f.pause(100 * time.Millisecond)
			}
		}
	})
	f.pause(5 * time.Second) // the flood builds up
	edgeMemory(t, w, "under the flood")

	for _, proto := range []string{"quic", "http2"} {
		otherConn.Stop()
		var took time.Duration
		otherConn, took = startOther(proto)
		t.Logf("connector of tunnel other restarted over %s under the flood: ready after %v", proto, took.Round(time.Millisecond))
		loop := testnet.StartLoop("users of tunnel other after its "+proto+" reconnect", 200*time.Millisecond, get("web.other.test"))
		time.Sleep(6 * time.Second)
		loop.Stop()
		t.Log(loop)
		if ok, _ := loop.Counts(); loop.Rate() < 0.99 || ok < 5 {
			t.Errorf("users of tunnel other after the %s reconnect: %v", proto, loop)
		}
	}
	_, peak := edgeMemory(t, w, "at the end of the flood")
	if peak > 200<<20 {
		t.Errorf("edge peak RSS %s under the flood, want under 200 MiB", testnet.MiB(peak))
	}
	t.Logf("attacker: %s", f.end())
	demoLoop.Stop()
	t.Log(demoLoop)
	if ok, _ := demoLoop.Counts(); demoLoop.Rate() < 0.99 || ok < 20 {
		t.Errorf("users of tunnel demo during the flood: %v", demoLoop)
	}

	metrics, err := w.rig.EdgeMetrics()
	if err != nil {
		t.Fatal(err)
	}
	var summary []string
	for _, m := range []struct{ name, label string }{
		{"onramp_edge_auth_failures_total", `reason="bad_secret"`},
		{"onramp_edge_auth_failures_total", `reason="unknown_tunnel"`},
		{"onramp_edge_auth_failures_total", `reason="timeout"`},
		{"onramp_edge_auth_failures_total", `reason="tls"`},
		{"onramp_edge_handshakes_refused_total", `limit="maxHandshakesPerSource"`},
		{"onramp_edge_quic_retries_total", `limit="quicRetryAbove"`},
	} {
		v := testnet.MetricValue(metrics, m.name, m.label)
		summary = append(summary, fmt.Sprintf("%s{%s} %v", m.name, m.label, v))
		if v == 0 {
			t.Errorf("%s{%s} is 0", m.name, m.label)
		}
	}
	t.Logf("edge metrics after the flood:\n%s", strings.Join(summary, "\n"))
	for _, m := range []struct{ name, label string }{
		{"onramp_edge_auth_failures_total", `reason="malformed"`},
		{"onramp_edge_handshakes_refused_total", `limit="maxHandshakes"`},
		{"onramp_edge_quic_retries_total", `limit="maxHandshakesPerSource"`},
	} {
		t.Logf("%s{%s} %v", m.name, m.label, testnet.MetricValue(metrics, m.name, m.label))
	}
	line := "limits.maxHandshakesPerSource (32) reached for 198.18.10.2"
	if n := strings.Count(w.rig.Edge.Output(), line); n != 1 {
		t.Errorf("the edge logged %q %d times, want once (rate-limited)", line, n)
	}
}
