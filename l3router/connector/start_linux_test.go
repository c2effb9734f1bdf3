package connector

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l3router/l3config"
	"github.com/onramp-net/onramp/testnet"
)

func TestMain(m *testing.M) { testnet.Main(m) }

// testLogger logs to the test.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// twoNodes is a connector host and a LAN host on one link.
func twoNodes() testnet.Topology {
	return testnet.Topology{
		Name:  "l3start",
		Nodes: []testnet.NodeSpec{{Name: "conn"}, {Name: "lan"}},
		Links: []testnet.LinkSpec{{A: "conn", B: "lan",
			AAddr: []netip.Prefix{pfx("198.18.30.1/24"), pfx("fd00:30::1/64")},
			BAddr: []netip.Prefix{pfx("198.18.30.2/24"), pfx("fd00:30::2/64")}}},
	}
}

// run runs a command in node and returns its output, failing the test on
// error.
func run(t *testing.T, node *testnet.Node, name string, args ...string) string {
	t.Helper()
	out, err := node.Run(context.Background(), name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func sysctl(t *testing.T, node *testnet.Node, key string) string {
	t.Helper()
	var v []byte
	if err := node.Do(func() (err error) {
		v, err = os.ReadFile("/proc/sys/" + key)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(v))
}

// startIn starts a connector for cfg in node's namespace, closed when the
// test ends.
func startIn(t *testing.T, node *testnet.Node, cfg *l3config.Connector) *Connector {
	t.Helper()
	var c *Connector
	if err := node.Do(func() (err error) {
		c, err = Start(context.Background(), cfg, testLogger(t))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestStartClose(t *testing.T) {
	n := testnet.New(t, twoNodes())
	node := n.Node("conn")
	cfg := testConfig(t)
	if sysctl(t, node, "net/ipv4/ip_forward") != "0" || sysctl(t, node, "net/ipv6/conf/all/forwarding") != "0" {
		t.Fatal("the namespace forwards already: the test would prove nothing")
	}
	c := startIn(t, node, cfg)

	info := c.Info()
	t.Logf("offloads: %s", info.Offloads)
	if !info.Offloads.TSO || info.Offloads.TUNBatch < 2 || !info.Offloads.UDPGSO || !info.Offloads.UDPGRO {
		t.Errorf("offloads %+v: want TSO, a TUN batch and UDP GSO/GRO on this kernel", info.Offloads)
	}
	if info.Port == 0 || info.EdgeAddr != netip.MustParseAddrPort("198.18.20.1:51820") {
		t.Errorf("port %d edge %v", info.Port, info.EdgeAddr)
	}
	if want := []string{forward4, forward6}; strings.Join(info.ForwardingEnabled, " ") != strings.Join(want, " ") {
		t.Errorf("forwarding enabled %v, want %v", info.ForwardingEnabled, want)
	}

	// What a user checks with ip(8) and sysctl.
	link := run(t, node, "ip", "link", "show", "onr0")
	if !strings.Contains(link, "mtu 1420") || !strings.Contains(link, ",UP,") {
		t.Errorf("link:\n%s", link)
	}
	addrs := run(t, node, "ip", "addr", "show", "dev", "onr0")
	for _, a := range []string{"inet 198.18.96.2/32", "inet6 fd00:96::2/128"} {
		if !strings.Contains(addrs, a) {
			t.Errorf("no %q in\n%s", a, addrs)
		}
	}
	if r := run(t, node, "ip", "-4", "route", "show", "dev", "onr0"); !strings.Contains(r, "198.18.96.0/20 scope link src 198.18.96.2") {
		t.Errorf("IPv4 routes:\n%s", r)
	}
	if r := run(t, node, "ip", "-6", "route", "show", "dev", "onr0"); !strings.Contains(r, "fd00:96::/48 src fd00:96::2") {
		t.Errorf("IPv6 routes:\n%s", r)
	}
	for k, want := range map[string]string{
		"net/ipv4/ip_forward":          "1",
		"net/ipv6/conf/all/forwarding": "1",
	} {
		if got := sysctl(t, node, k); got != want {
			t.Errorf("%s = %s, want %s", k, got, want)
		}
	}

	// This host's own packets to a client go into the TUN, towards the
	// edge (which is not there: no handshake). 1028-byte packets, so
	// that the kernel's own small IPv6 packets on the new link (router
	// solicitations, MLD) cannot make up the count.
	var s Stats
	for deadline := time.Now().Add(5 * time.Second); !s.LinkUp && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var err error
		if s, err = c.Stats(); err != nil {
			t.Fatal(err)
		}
	}
	if !s.LinkUp {
		t.Fatalf("link not up in Stats: %+v", s)
	}
	before := s
	_, _ = node.Run(context.Background(), "ping", "-c", "5", "-i", "0.1", "-W", "1", "-s", "1000", "198.18.96.10")
	s, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if got := s.ToEdgeBytes - before.ToEdgeBytes; s.ToEdgePackets-before.ToEdgePackets < 5 || got < 5*1028 {
		t.Errorf("stats %+v after %+v: want the 5 pings of 1028 bytes counted", s, before)
	}
	if !s.LastHandshake.IsZero() || c.Ready() {
		t.Errorf("ready without an edge: %+v", s)
	}

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if out, err := node.Run(context.Background(), "ip", "link", "show", "onr0"); err == nil {
		t.Fatalf("onr0 still there after Close:\n%s", out)
	}
	if r := run(t, node, "ip", "-4", "route", "show", "198.18.96.0/20"); strings.TrimSpace(r) != "" {
		t.Fatalf("route left after Close: %s", r)
	}
	if r := run(t, node, "ip", "-6", "route", "show", "fd00:96::/48"); strings.TrimSpace(r) != "" {
		t.Fatalf("route left after Close: %s", r)
	}

	// The name is free again: a second connector starts.
	if err := node.Do(func() (err error) {
		c, err = Start(context.Background(), cfg, testLogger(t))
		return err
	}); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestStartFails checks that a failing step is named and that nothing is
// left behind.
func TestStartFails(t *testing.T) {
	n := testnet.New(t, twoNodes())
	node := n.Node("conn")
	startErr := func(cfg *l3config.Connector) error {
		t.Helper()
		var c *Connector
		err := node.Do(func() (err error) {
			c, err = Start(context.Background(), cfg, testLogger(t))
			return err
		})
		if err == nil {
			c.Close()
			t.Fatal("Start succeeded")
		}
		t.Log(err)
		if out, lerr := node.Run(context.Background(), "ip", "link", "show", cfg.Interface); lerr == nil && cfg.Interface != "eth0" {
			t.Fatalf("%s left behind after a failed Start:\n%s", cfg.Interface, out)
		}
		return err
	}

	t.Run("interface name taken", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.Interface = "eth0" // the veth
		if err := startErr(cfg); !strings.HasPrefix(err.Error(), "create TUN eth0: ") || !strings.Contains(err.Error(), "exists already") {
			t.Fatalf("error %q does not name the step", err)
		}
	})
	t.Run("route exists", func(t *testing.T) {
		run(t, node, "ip", "route", "add", "198.18.96.0/20", "dev", "eth0")
		defer run(t, node, "ip", "route", "del", "198.18.96.0/20", "dev", "eth0")
		err := startErr(testConfig(t))
		if !strings.Contains(err.Error(), "add route 198.18.96.0/20 dev onr0") || !strings.Contains(err.Error(), "exists already") {
			t.Fatalf("error %q does not name the route and the cause", err)
		}
	})
}

func TestStartRefusesBadConfig(t *testing.T) {
	cfg := testConfig(t)
	cfg.Routes = append(cfg.Routes, pfx("198.18.30.128/25")) // inside subnets[0]
	_, err := Start(context.Background(), cfg, testLogger(t))
	if err == nil || !strings.Contains(err.Error(), "routes[2]: 198.18.30.128/25 overlaps subnets[0]") {
		t.Fatalf("error %v, want the field named", err)
	}
}

func TestResolveEndpoint(t *testing.T) {
	for in, want := range map[string]string{
		"198.18.20.1:51820":         "198.18.20.1:51820",
		"[fd00:20::1]:51820":        "[fd00:20::1]:51820",
		"[::ffff:198.18.20.1]:4500": "198.18.20.1:4500",
	} {
		if got, err := resolveEndpoint(context.Background(), in); err != nil || got.String() != want {
			t.Errorf("%s: %v %v, want %s", in, got, err, want)
		}
	}
	if got, err := resolveEndpoint(context.Background(), "localhost:51820"); err != nil || !got.Addr().IsLoopback() || got.Port() != 51820 {
		t.Errorf("localhost: %v %v", got, err)
	}
	if _, err := resolveEndpoint(context.Background(), "198.18.20.1:0"); err == nil || !strings.Contains(err.Error(), "edge.endpoint") {
		t.Errorf("port 0: %v", err)
	}
}
