package edge_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/bits"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l4proxy/edge"
	"github.com/onramp-net/onramp/l4proxy/edge/edgetest"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

// logBuf keeps what a debug logger wrote, for the tests that learn flow IDs
// from the edge's log as an attacker with access to it would.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// debugLogger logs at debug level to a logBuf (and to stderr at the level
// of ONRAMP_TEST_LOG).
func debugLogger() (*slog.Logger, *logBuf) {
	lb := &logBuf{}
	var w io.Writer = lb
	if os.Getenv("ONRAMP_TEST_LOG") == "debug" {
		w = io.MultiWriter(lb, os.Stderr)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

var flowOpened = regexp.MustCompile(`msg="edge: udp flow opened" user=(\S+) .*flow=(\d+)`)

// flowIDs returns the IDs of the flows the edge logged as opened, in order,
// for user ("" for every user).
func flowIDs(t *testing.T, log string, user string) []uint32 {
	t.Helper()
	var ids []uint32
	for _, m := range flowOpened.FindAllStringSubmatch(log, -1) {
		if user != "" && m[1] != user {
			continue
		}
		id, err := strconv.ParseUint(m[2], 10, 32)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, uint32(id))
	}
	return ids
}

// exchange sends msg from c until an answer comes, and returns it, or ""
// after tries attempts.
func exchange(c net.Conn, msg string, tries int) string {
	buf := make([]byte, 2048)
	for range tries {
		c.Write([]byte(msg))
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, err := c.Read(buf); err == nil {
			return string(buf[:n])
		}
	}
	return ""
}

// rawConn dials e's tunnel listener as a connector of the tunnel of tok
// would, without a connector behind it: the test speaks the datagrams
// itself. Everything it receives is collected.
type rawConn struct {
	tunnel.Conn
	mu   sync.Mutex
	got  [][]byte
	done chan struct{}
}

func dialRaw(t *testing.T, e *edgetest.Env, tok tunnel.Token) *rawConn {
	t.Helper()
	before := len(e.Server.Connections())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := tunnel.Dial(ctx, e.Proto, e.Listener.Addr().String(), tok, [16]byte{0xa7, byte(len(tok.Edges))}, edgetest.TunnelConfig())
	if err != nil {
		t.Fatal(err)
	}
	r := &rawConn{Conn: c, done: make(chan struct{})}
	t.Cleanup(func() {
		c.CloseWithError(tunnel.CloseNormal, "")
		<-r.done
	})
	go func() {
		defer close(r.done)
		buf := make([]byte, tunnel.MaxDatagramLen)
		for {
			n, err := c.ReceiveDatagram(c.Context(), buf)
			if c.Context().Err() != nil {
				return
			}
			if err == nil {
				r.mu.Lock()
				r.got = append(r.got, bytes.Clone(buf[:n]))
				r.mu.Unlock()
			}
		}
	}()
	for deadline := time.Now().Add(10 * time.Second); len(e.Server.Connections()) <= before; {
		if time.Now().After(deadline) {
			t.Fatal("raw connection not registered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return r
}

func (r *rawConn) received() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.got...)
}

// TestUDPFlowOwnership plays a connector of another tunnel that knows the
// ID of a user's flow (from the edge's debug log): its spoofed answer must
// not reach the user, asking "unknown flow" must not bring back the flow's
// FlowOpen (user address, service), its close must not end the flow. The
// same holds for a second connection of the user's own tunnel. Each attempt
// is counted by whose flow it named.
func TestUDPFlowOwnership(t *testing.T) {
	forEach(t, func(t *testing.T, proto string) {
		logger, log := debugLogger()
		e := edgetest.Start(t, proto, "127.0.0.1", edge.Options{Logger: logger})
		origin := edgetest.EchoUDP(t, "127.0.0.1", "echo:")
		e.StartConnector("ingress:\n  - hostname: dns.internal\n    service: udp://"+origin+"\n  - service: http_status:404\n", nil)
		user, err := net.Dial("udp", e.ServeUDP("dns.internal"))
		if err != nil {
			t.Fatal(err)
		}
		defer user.Close()
		if got := exchange(user, "hello", 20); got != "echo:hello" {
			t.Fatalf("user's flow: got %q", got)
		}
		ids := flowIDs(t, log.String(), user.LocalAddr().String())
		if len(ids) != 1 {
			t.Fatalf("flow IDs of the user in the edge's log: %v\n%s", ids, log.String())
		}
		victim := ids[0]

		// A connector of tunnel B, and a second connection of the user's
		// own tunnel A that carries none of its flows.
		pin, err := tunnel.CertificatePin(&e.Cert)
		if err != nil {
			t.Fatal(err)
		}
		tokB, err := tunnel.NewToken([]string{e.Listener.Addr().String()}, pin)
		if err != nil {
			t.Fatal(err)
		}
		e.Auth.Add(tokB)
		attackers := []*rawConn{dialRaw(t, e, tokB), dialRaw(t, e, e.Token)}
		const spoofed = "spoofed answer"
		// A spoofed answer, then "unknown flow", then a close; each three
		// times, as datagrams may be lost.
		for _, d := range [][]byte{
			tunnel.AppendDatagram(nil, victim, []byte(spoofed)),
			tunnel.AppendFlowClose(nil, victim, tunnel.FlowUnknown),
			tunnel.AppendFlowClose(nil, victim, tunnel.FlowClosed),
		} {
			for range 3 {
				for _, a := range attackers {
					a.SendDatagram(d)
				}
			}
			time.Sleep(100 * time.Millisecond)
		}

		// The user receives nothing from them.
		user.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		buf := make([]byte, 2048)
		if n, err := user.Read(buf); err == nil {
			t.Errorf("the user received %q from another connection", buf[:n])
		}
		// They learn nothing of the flow.
		for i, a := range attackers {
			for _, d := range a.received() {
				typ, id, _, err := tunnel.ParseDatagram(d)
				if err != nil || typ == tunnel.DatagramFlowOpen || bytes.Contains(d, []byte("dns.internal")) ||
					bytes.Contains(d, []byte(user.LocalAddr().(*net.UDPAddr).IP.To4())) || id != victim {
					t.Errorf("attacker %d received % x (type %d, flow %d)", i, d, typ, id)
				}
			}
		}
		// The flow keeps working: the same one, never closed and reopened.
		if got := exchange(user, "still there", 20); got != "echo:still there" {
			t.Errorf("user's flow after the attack: got %q", got)
		}
		if v := edgetest.Metric(t, e.Registry, "onramp_edge_udp_flows_total", ""); v != 1 {
			t.Errorf("edge opened %v flows, want 1: the attack closed the user's", v)
		}
		for _, c := range []struct {
			reason string
			want   float64
		}{{"other_tunnel", 9}, {"other_connection", 9}} {
			// Counted once per datagram that arrived (at least one of each kind).
			if v := edgetest.Metric(t, e.Registry, "onramp_edge_udp_flow_mismatches_total", c.reason); v < 3 || v > c.want {
				t.Errorf("mismatches{%s} = %v, want 3 to %v", c.reason, v, c.want)
			}
		}
		if !strings.Contains(log.String(), "connector named a udp flow its connection does not own") {
			t.Error("the mismatch was not logged")
		}
	})
}

// TestUDPFlowIDsUnguessable: the IDs of 64 flows are not a sequence but
// spread over the 32-bit space.
func TestUDPFlowIDsUnguessable(t *testing.T) {
	logger, log := debugLogger()
	e := edgetest.Start(t, "quic", "127.0.0.1", edge.Options{Logger: logger})
	origin := edgetest.EchoUDP(t, "127.0.0.1", "")
	e.StartConnector("ingress:\n  - service: udp://"+origin+"\n", nil)
	addr := e.ServeUDP("u")
	const n = 64
	for i := range n {
		// Each user keeps its socket to the end: a closed one's port could
		// be the next user's, and so its flow.
		c, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if got := exchange(c, "x", 20); got != "x" {
			t.Fatalf("user %d: got %q", i, got)
		}
	}
	ids := flowIDs(t, log.String(), "")
	if len(ids) != n {
		t.Fatalf("%d flow IDs logged, want %d", len(ids), n)
	}
	seen := map[uint32]bool{}
	ones, high, near := 0, 0, 0
	for i, id := range ids {
		if id == 0 || seen[id] {
			t.Errorf("flow ID %d zero or repeated", id)
		}
		seen[id] = true
		if i > 0 {
			if d := int64(id) - int64(ids[i-1]); d > -256 && d < 256 {
				near++
			}
		}
		ones += bits.OnesCount32(id)
		if id >= 1<<24 {
			high++
		}
	}
	// 64 random IDs: 1024 bits set, give or take 23; none below 2^24 but
	// by a 1-in-256 chance each.
	if near > 0 {
		t.Errorf("flow IDs %v: %d follow the one before within 256: guessable", ids, near)
	}
	if ones < 850 || ones > 1200 || high < n-8 {
		t.Errorf("flow IDs %v: %d bits set of %d, %d above 2^24: not random", ids, ones, 32*n, high)
	}
}

// TestUDPBudgetApartFromStreams: UDP flows open up to their own budget with
// every stream of the tunnel taken, and take none of the streams' slots.
func TestUDPBudgetApartFromStreams(t *testing.T) {
	const streams, flows = 4, 8
	e := edgetest.Start(t, "quic", "127.0.0.1", edge.Options{MaxStreamsPerTunnel: streams, MaxUDPFlowsPerTunnel: flows})
	origin := edgetest.EchoUDP(t, "127.0.0.1", "")
	e.StartConnector(fmt.Sprintf("ingress:\n  - hostname: u\n    service: udp://%s\n  - service: tcp://%s\n",
		origin, edgetest.EchoTCP(t, "127.0.0.1")), nil)
	udpAddr, tcpAddr := e.ServeUDP("u"), e.ServeTCP("t")
	// stream echoes one line on a new TCP connection and returns it open.
	stream := func(i int) (net.Conn, error) {
		c := dial(t, tcpAddr)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		msg := []byte(fmt.Sprintf("stream %d", i))
		c.Write(msg)
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil {
			return c, err
		}
		c.SetDeadline(time.Time{})
		return c, nil
	}
	var held []net.Conn
	for i := range streams {
		c, err := stream(i)
		if err != nil {
			t.Fatalf("TCP user %d: %v", i, err)
		}
		held = append(held, c)
	}
	answered := 0
	for i := range flows + 4 {
		c, err := net.Dial("udp", udpAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if exchange(c, fmt.Sprint(i), 3) != "" {
			answered++
		}
	}
	if answered != flows {
		t.Errorf("%d UDP users answered with every stream taken, want %d (maxUDPFlowsPerTunnel)", answered, flows)
	}
	if v := edgetest.Metric(t, e.Registry, "onramp_edge_udp_flows_refused_total", "flow_limit"); v < 4 {
		t.Errorf("refused{flow_limit} = %v, want at least 4", v)
	}
	// The streams' budget is intact: full now, and a slot freed is a
	// stream served, with every UDP flow still open.
	if _, err := stream(streams); err == nil {
		t.Errorf("TCP user served beyond maxStreamsPerTunnel (%d)", streams)
	}
	held[0].Close()
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err = stream(streams + 1); err == nil {
			break
		}
	}
	if err != nil {
		t.Errorf("TCP user after a stream ended, with the UDP budget spent: %v", err)
	}
	if v := edgetest.Metric(t, e.Registry, "onramp_edge_udp_flows_open", ""); v != flows {
		t.Errorf("udp flows open %v, want %d", v, flows)
	}
}

// TestUDPNewFlowRates: new flows from one /24 are held to
// udpNewFlowsPerSource, and from many to udpNewFlowsPerTunnel.
func TestUDPNewFlowRates(t *testing.T) {
	const perSource, perTunnel = 5, 20
	e := edgetest.Start(t, "quic", "127.0.0.1", edge.Options{UDPNewFlowsPerSource: perSource, UDPNewFlowsPerTunnel: perTunnel})
	origin := edgetest.EchoUDP(t, "127.0.0.1", "")
	e.StartConnector("ingress:\n  - service: udp://"+origin+"\n", nil)
	to, err := net.ResolveUDPAddr("udp", e.ServeUDP("u"))
	if err != nil {
		t.Fatal(err)
	}
	// send sends one datagram from each of n new ports of src.
	send := func(src string, n int) {
		for range n {
			c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)}, to)
			if err != nil {
				t.Skipf("loopback source %s: %v", src, err)
			}
			defer c.Close()
			c.Write([]byte("x"))
		}
	}
	wait := func(name, label string, want float64) float64 {
		var v float64
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if v = edgetest.Metric(t, e.Registry, name, label); v >= want {
				break
			}
		}
		return v
	}
	start := time.Now()
	send("127.0.1.1", 3*perSource)
	if v := wait("onramp_edge_udp_flows_refused_total", "source_rate", 2*perSource); v < 2*perSource-2 {
		t.Errorf("from one /24: %v refused for source_rate, want about %d", v, 2*perSource)
	}
	// One source from each of 40 other /24s: the tunnel's rate holds them.
	for i := range 40 {
		send(fmt.Sprintf("127.0.%d.1", 2+i), 1)
	}
	if v := wait("onramp_edge_udp_flows_refused_total", "tunnel_rate", 40-(perTunnel-perSource)); v < 40-(perTunnel-perSource)-2 {
		t.Errorf("from 40 /24s: %v refused for tunnel_rate, want about %d", v, 40-(perTunnel-perSource))
	}
	opened := edgetest.Metric(t, e.Registry, "onramp_edge_udp_flows_total", "")
	// The bursts, and what the rates refilled while the test ran.
	if max := perTunnel + perTunnel*time.Since(start).Seconds(); opened < perTunnel-2 || opened > max {
		t.Errorf("%v flows opened, want %d to %.0f", opened, perTunnel, max)
	}
}

// TestUDPUnrepliedExpiry: a flow the origin never answered ends after
// UDPUnrepliedIdle, on the edge and on the connector, and its user got
// nothing; an answered one lives UDPFlowIdle.
func TestUDPUnrepliedExpiry(t *testing.T) {
	forEach(t, func(t *testing.T, proto string) {
		const idle, unreplied = 4 * time.Second, 400 * time.Millisecond
		e := edgetest.Start(t, proto, "127.0.0.1", edge.Options{UDPFlowIdle: idle, UDPUnrepliedIdle: unreplied})
		echo := edgetest.EchoUDP(t, "127.0.0.1", "")
		silent, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer silent.Close()
		heard := make(chan struct{}, 16)
		go func() {
			buf := make([]byte, 2048)
			for {
				if _, _, err := silent.ReadFrom(buf); err != nil {
					return
				}
				heard <- struct{}{}
			}
		}()
		r := e.StartConnector(fmt.Sprintf("ingress:\n  - hostname: echo\n    service: udp://%s\n  - service: udp://%s\n",
			echo, silent.LocalAddr()), nil)
		answered, err := net.Dial("udp", e.ServeUDP("echo"))
		if err != nil {
			t.Fatal(err)
		}
		defer answered.Close()
		unanswered, err := net.Dial("udp", e.ServeUDP("silent"))
		if err != nil {
			t.Fatal(err)
		}
		defer unanswered.Close()
		if got := exchange(answered, "x", 20); got != "x" {
			t.Fatalf("echo: %q", got)
		}
		start := time.Now()
		unanswered.Write([]byte("anyone?"))
		select {
		case <-heard:
		case <-time.After(5 * time.Second):
			t.Fatal("the silent origin never got the datagram")
		}
		open := func() (edgeN, connN float64) {
			return edgetest.Metric(t, e.Registry, "onramp_edge_udp_flows_open", ""),
				edgetest.Metric(t, r.Registry, "onramp_connector_udp_flows_open", "")
		}
		for {
			edgeN, connN := open()
			if edgeN == 1 && connN == 1 {
				break
			}
			if time.Since(start) > idle/2 {
				t.Fatalf("after %v: %v flows open on the edge, %v on the connector; want the answered one only",
					time.Since(start).Round(time.Millisecond), edgeN, connN)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("unanswered flow closed on both sides after %v", time.Since(start).Round(time.Millisecond))
		unanswered.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, err := unanswered.Read(make([]byte, 2048)); err == nil {
			t.Errorf("the unanswered user received %d bytes", n)
		}
		// The answered flow outlives several unreplied timeouts.
		time.Sleep(4 * unreplied)
		if edgeN, _ := open(); edgeN != 1 {
			t.Errorf("answered flow gone after %v (udpFlowIdle %v)", time.Since(start).Round(time.Millisecond), idle)
		}
	})
}
