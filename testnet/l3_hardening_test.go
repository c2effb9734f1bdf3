package testnet_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l3router/l3config"
	"github.com/onramp-net/onramp/testnet"
)

// l3HardenEnv is the world of TestL3Hardening.
type l3HardenEnv struct {
	n      *testnet.Net
	w      *testnet.L3World
	cli    func(t *testing.T, args ...string) string
	alice  *l3config.Client
	siteA  *l3config.Connector // as it runs
	connA  *testnet.Proc
	lanFar netip.Addr // on the connector host, in a subnet the edge routes to it and it does not advertise
}

// The attacker's /64 in the handshake flood, held by the client node.
var floodPrefix = netip.MustParsePrefix("fd00:119::/64")

// TestL3Hardening plays the attacks of the L3 on-ramp's hole against the
// real edge and connector: a handshake flood from many addresses of one
// /64, the address of a removed client given to a new one, and a packet
// from the edge to a destination outside the connector's subnets.
func TestL3Hardening(t *testing.T) {
	if err := testnet.WGQuickAvailable(); err != nil {
		testnet.SkipOrFail(t, "L3 end to end: %v", err)
	}
	n := testnet.New(t, testnet.L3())
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := t.TempDir()
	w, err := testnet.StartL3World(ctx, n, dir, "")
	if err != nil {
		t.Fatal(err)
	}
	e := &l3HardenEnv{n: n, w: w, lanFar: netip.MustParseAddr("198.18.131.1")}
	e.cli = func(t *testing.T, args ...string) string {
		t.Helper()
		out, err := w.EdgeCLI(ctx, args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	// The edge routes 198.18.131.0/24 to site-a as well, but site-a's
	// l3.yml does not advertise it: as if the edge's record were wrong, or
	// the edge compromised. On the connector host, 198.18.131.1 stands for
	// the host's other networks (an address on its loopback: a packet the
	// host forwarded there would be delivered to the host itself).
	path := filepath.Join(dir, "site-a.yml")
	if _, err := w.AddConnector(ctx, n.Node("conn"), "site-a", path, "198.18.130.0/24", "fd00:130::/64", "198.18.131.0/24"); err != nil {
		t.Fatal(err)
	}
	if e.siteA, err = l3config.LoadConnector(path); err != nil {
		t.Fatal(err)
	}
	e.siteA.Subnets = slices.DeleteFunc(e.siteA.Subnets, func(p netip.Prefix) bool { return p.Contains(e.lanFar) })
	data, err := e.siteA.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	conn := n.Node("conn")
	if err := conn.IP(ctx, "addr", "add", netip.PrefixFrom(e.lanFar, 32).String(), "dev", "lo"); err != nil {
		t.Fatal(err)
	}
	if e.connA, err = w.StartConnector(conn, path); err != nil {
		t.Fatal(err)
	}
	conf := e.cli(t, "l3", "client", "add", "alice")
	if e.alice, err = l3config.ParseClient([]byte(conf)); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(e.alice.AllowedIPs, func(p netip.Prefix) bool { return p.Contains(e.lanFar) }) {
		t.Fatalf("alice's config does not route %v through the edge: %v", e.lanFar, e.alice.AllowedIPs)
	}
	if _, err := n.Node("client").WGQuickUp(ctx, fmt.Sprintf("onrh%d", os.Getpid()%1000000), []byte(conf)); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Node("lan").ServeOrigins(); err != nil {
		t.Fatal(err)
	}
	lanEcho := netip.AddrPortFrom(lanAddr(false), testnet.OriginEcho)
	if err := waitFor(10*time.Second, func() bool { return echoOnce(n.Node("client"), lanEcho, time.Second) == nil }); err != nil {
		t.Fatalf("alice does not reach the LAN host: %v", err)
	}

	t.Run("ConnectorForwardsOnlyItsSubnets", e.onlyItsSubnets)
	t.Run("AddressReuse", e.addressReuse)
	t.Run("HandshakeFlood", e.handshakeFlood)
	t.Run("CookieIgnoringFlood", e.cookieIgnoringFlood) // l3_ops_test.go
}

// echoOnce sends one datagram to the UDP echo at addr from node and waits
// up to timeout for it to come back: a ping through the tunnel.
func echoOnce(node *testnet.Node, addr netip.AddrPort, timeout time.Duration) error {
	c, err := node.Dial("udp", addr.String())
	if err != nil {
		return err
	}
	defer c.Close()
	msg := make([]byte, 32)
	rand.Read(msg)
	if _, err := c.Write(msg); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 64)
	for {
		k, err := c.Read(buf)
		if err != nil {
			return fmt.Errorf("echo from %v: %w", addr, err)
		}
		if bytes.Equal(buf[:k], msg) {
			return nil
		}
	}
}

// onlyItsSubnets: alice's datagrams to an address the edge routes to
// site-a but site-a does not advertise never reach the connector host (the
// connector drops and counts them), while the LAN and the connector's own
// virtual address stay reachable.
func (e *l3HardenEnv) onlyItsSubnets(t *testing.T) {
	client, conn := e.n.Node("client"), e.n.Node("conn")
	var got atomic.Int64
	var ln *net.UDPConn
	target := netip.AddrPortFrom(e.lanFar, 7300)
	if err := conn.Do(func() (err error) {
		ln, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(target))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := ln.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
			got.Add(1)
		}
	}()
	metric := func() float64 {
		t.Helper()
		m, err := conn.Metrics(testnet.L3ConnectorReady)
		if err != nil {
			t.Fatal(err)
		}
		return testnet.MetricValue(m, "onramp_connector_l3_dropped_packets_total", `reason="destination"`)
	}
	before := metric()
	const sent = 20
	if err := client.Do(func() error {
		c, err := net.Dial("udp", target.String())
		if err != nil {
			return err
		}
		defer c.Close()
		for range sent {
			if _, err := c.Write([]byte("outside the connector's subnets")); err != nil {
				return err
			}
			time.Sleep(10 * time.Millisecond)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The LAN host and the connector's own virtual address answer.
	if err := echoOnce(client, netip.AddrPortFrom(lanAddr(false), testnet.OriginEcho), 5*time.Second); err != nil {
		t.Fatalf("the LAN host, inside the subnets: %v", err)
	}
	own := e.siteA.Addresses[0].Addr()
	if out, err := client.Run(context.Background(), "ping", "-c", "1", "-W", "5", own.String()); err != nil {
		t.Fatalf("ping the connector's own address %v: %v\n%s", own, err, out)
	}
	time.Sleep(300 * time.Millisecond)
	dropped := metric() - before
	t.Logf("%d datagrams to %v: %d reached the connector host, %v dropped by the connector", sent, target, got.Load(), dropped)
	if got.Load() != 0 {
		t.Errorf("%d of %d datagrams to %v, outside site-a's subnets, reached the connector host", got.Load(), sent, target)
	}
	if dropped < sent {
		t.Errorf("onramp_connector_l3_dropped_packets_total{reason=destination} went up by %v, want %d", dropped, sent)
	}
	if err := waitFor(3*time.Second, func() bool {
		return strings.Contains(e.connA.Output(), "packets from the edge to destinations outside the subnets")
	}); err != nil {
		t.Errorf("no warning about the dropped packets in the connector's log:\n%s", e.connA.Output())
	}
}

// addressReuse: a client added after another was removed does not get the
// removed one's addresses (l3.address_reuse_delay, 24h by default), nor
// does the removed one coming back under the same name.
func (e *l3HardenEnv) addressReuse(t *testing.T) {
	add := func(name string) *l3config.Client {
		t.Helper()
		c, err := l3config.ParseClient([]byte(e.cli(t, "l3", "client", "add", name)))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	bob := add("bob")
	e.cli(t, "l3", "client", "remove", "bob")
	carol, bobAgain := add("carol"), add("bob")
	t.Logf("bob had %v; after his removal carol got %v and bob, added again, %v", bob.Addresses, carol.Addresses, bobAgain.Addresses)
	for name, c := range map[string]*l3config.Client{"carol": carol, "bob added again": bobAgain} {
		for _, a := range c.Addresses {
			if slices.Contains(bob.Addresses, a) {
				t.Errorf("%s got %v, removed bob's address", name, a)
			}
		}
	}
	for _, name := range []string{"carol", "bob"} {
		e.cli(t, "l3", "client", "remove", name)
	}
}

// handshakeFlood: an attacker holding a /64 floods the edge's WireGuard
// port with initiations from ever new addresses of it and answers every
// cookie reply. Under the flood alice keeps being served, a new client
// (dave, from another /64) completes his handshake, the edge processes no
// more of the attacker's proven handshakes than one address gets (20/s,
// burst 5), and its memory stays bounded.
func (e *l3HardenEnv) handshakeFlood(t *testing.T) {
	ctx := context.Background()
	client := e.n.Node("client")
	if err := e.n.HoldPrefix(ctx, "client", "edge", floodPrefix); err != nil {
		t.Fatal(err)
	}
	loop := e.alicePings()
	defer loop.Stop()
	edgeMetrics := func() string { return e.metrics(t) }
	const hs = "onramp_edge_l3_handshake_messages_total"
	count := func(m, result string) float64 { return testnet.MetricValue(m, hs, `result="`+result+`"`) }

	const (
		rate     = 20000 // fresh initiations a second
		duration = 12 * time.Second
	)
	edge6 := netip.AddrPortFrom(testnet.L3Edge6, testnet.L3EdgePort)
	flood, err := client.StartHandshakeFlood(floodPrefix, 40000, edge6, e.alice.EdgePublicKey, rate, duration)
	if err != nil {
		t.Fatal(err)
	}
	defer flood.Stop()
	// The edge goes under load: cookie replies.
	var m1 string
	if err := waitFor(5*time.Second, func() bool {
		m1 = edgeMetrics()
		return count(m1, "cookie") > 0
	}); err != nil {
		t.Fatalf("the edge sends no cookie replies under the flood: %v\n%s", err, flood)
	}
	t1 := time.Now()
	_, _, answered1 := flood.Counts()

	// A new client joins during the flood, from another /64 (conn2's
	// link) to the edge's IPv6 address: his first initiation gets a
	// cookie, the next one (wireguard-go's retry, 5 s later) carries its
	// mac2 and is processed.
	daveConf := e.cli(t, "l3", "client", "add", "dave")
	dave, err := l3config.ParseClient([]byte(daveConf))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(daveConf, "Endpoint = "+dave.Endpoint+"\n") {
		t.Fatalf("no Endpoint line in dave's config:\n%s", daveConf)
	}
	daveConf = strings.Replace(daveConf, "Endpoint = "+dave.Endpoint+"\n", "Endpoint = "+edge6.String()+"\n", 1)
	conn2 := e.n.Node("conn2")
	joined := make(chan error, 1)
	go func() {
		if _, err := conn2.WGQuickUp(ctx, fmt.Sprintf("onrd%d", os.Getpid()%1000000), []byte(daveConf)); err != nil {
			joined <- err
			return
		}
		start := time.Now()
		err := waitFor(duration, func() bool {
			return echoOnce(conn2, netip.AddrPortFrom(lanAddr(false), testnet.OriginEcho), time.Second) == nil
		})
		if err == nil {
			t.Logf("dave reached the LAN %v after his interface came up", time.Since(start).Round(100*time.Millisecond))
		}
		joined <- err
	}()

	// Measure over most of the flood, while it runs.
	time.Sleep(duration - time.Since(t1) - 2*time.Second)
	m2 := edgeMetrics()
	window := time.Since(t1)
	_, _, answered2 := flood.Counts()
	flood.Wait()
	if err := <-joined; err != nil {
		t.Errorf("dave could not join during the flood: %v", err)
	}
	loop.Stop()
	t.Log(flood)
	t.Log(loop)
	rss, peak, err := e.w.Edge.MemStatus()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("edge memory after the flood: RSS %s, peak %s", testnet.MiB(rss), testnet.MiB(peak))

	d := func(result string) float64 { return count(m2, result) - count(m1, result) }
	t.Logf("in %v of the flood the edge processed %v handshake messages under load, %v within its budget; "+
		"answered %v with a cookie, refused %v for their source's limit, %v for a full table; the attacker answered %d cookies",
		window.Round(time.Millisecond), d("processed_under_load"), d("processed"), d("cookie"), d("source_limit"), d("table_full"), answered2-answered1)
	// The attacker's /64 is one source: 20/s after a burst of 5. dave's
	// handshake (a few initiations of his own source) comes on top.
	limit := 5 + 20*window.Seconds() + 5
	if got := d("processed_under_load"); got > limit {
		t.Errorf("the edge processed %v proven handshake messages in %v, want at most %.0f: the attacker's addresses of one /64 share one limit",
			got, window.Round(time.Millisecond), limit)
	}
	if answered := float64(answered2 - answered1); answered < 10*limit || d("source_limit") < answered/2 {
		t.Errorf("the attacker answered %v cookies and %v were refused for the source limit: the flood did not test the limit", answered, d("source_limit"))
	}
	if out := e.w.Edge.Output(); !strings.Contains(out, "l3.handshakes.per_source_per_second (20/s, burst 5") || !strings.Contains(out, "for "+floodPrefix.String()) {
		t.Errorf("the edge's log does not name the handshake limit and the attacker's /64:\n%s", out)
	}
	if r := loop.Rate(); r < 0.99 {
		t.Errorf("alice's success rate under the flood: %.1f%%, want at least 99%%", 100*r)
	}
	if peak > 200<<20 {
		t.Errorf("edge peak RSS %s, want under 200 MiB", testnet.MiB(peak))
	}
}

// alicePings starts alice pinging the LAN's UDP echo through the edge,
// ten times a second, as the user an attack must not hurt.
func (e *l3HardenEnv) alicePings() *testnet.Loop {
	client := e.n.Node("client")
	lanEcho := netip.AddrPortFrom(lanAddr(false), testnet.OriginEcho)
	return testnet.StartLoop("alice: UDP ping through the edge", 100*time.Millisecond, func() error {
		return echoOnce(client, lanEcho, time.Second)
	})
}

// metrics returns the edge's /metrics.
func (e *l3HardenEnv) metrics(t *testing.T) string {
	t.Helper()
	m, err := e.w.EdgeMetrics()
	if err != nil {
		t.Fatal(err)
	}
	return m
}
