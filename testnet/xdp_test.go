package testnet_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l3router/l3config"
	"github.com/onramp-net/onramp/testnet"
)

// TestXDPPrefilter: the edge with its XDP pre-filter on the interface its
// WireGuard clients reach it by. A garbage flood at the WireGuard port is
// dropped by XDP (counted by reason; the WireGuard device never sees it)
// while alice's real WireGuard traffic passes and reaches the LAN; a
// flood of initiations from one /64 reaches the device at the source's
// rate only.
func TestXDPPrefilter(t *testing.T) {
	if err := testnet.WGQuickAvailable(); err != nil {
		testnet.SkipOrFail(t, "L3 end to end: %v", err)
	}
	n := testnet.New(t, testnet.L3())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	w, err := testnet.StartL3WorldYAML(ctx, n, dir, func(data string) string {
		return testnet.L3EdgeYAML(data, "") + "xdp:\n  interfaces: [eth0]\n"
	})
	if err != nil {
		t.Fatal(err)
	}
	out := w.Edge.Output()
	i := strings.Index(out, "xdp pre-filter attached")
	if i < 0 {
		t.Fatalf("the edge did not attach its pre-filter:\n%s", out)
	}
	t.Log(strings.SplitN(out[i:], "\n", 2)[0])
	conf := siteAndAlice(ctx, t, n, w, dir)
	client := n.Node("client")
	if _, err := n.Node("lan").ServeOrigins(); err != nil {
		t.Fatal(err)
	}
	lanEcho := netip.AddrPortFrom(lanAddr(false), testnet.OriginEcho)
	if err := waitFor(10*time.Second, func() bool { return echoOnce(client, lanEcho, time.Second) == nil }); err != nil {
		t.Fatalf("alice does not reach the LAN host: %v", err)
	}
	metrics := func() string {
		t.Helper()
		m, err := w.EdgeMetrics()
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	const xdp = "onramp_edge_xdp_packets_total"
	m0 := metrics()
	var m1 string

	// Garbage ("onramp testnet spray...": no WireGuard type) at the
	// WireGuard port, 20,000 a second for 5 s, while alice pings.
	spray, err := client.StartUDPSpray([]netip.Addr{testnet.L3Edge4, testnet.L3Edge6}, testnet.L3EdgePort, 200, 20000, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	loop := testnet.StartLoop("alice: UDP ping through the edge", 100*time.Millisecond, func() error {
		return echoOnce(client, lanEcho, time.Second)
	})
	spray.Wait()
	loop.Stop()
	t.Log(spray)
	t.Log(loop)
	m1 = metrics()
	delta := func(name string, labels ...string) float64 {
		return testnet.MetricValue(m1, name, labels...) - testnet.MetricValue(m0, name, labels...)
	}
	dropped := delta(xdp, `reason="wireguard_type"`)
	t.Logf("the pre-filter dropped %.0f for their type, passed %.0f WireGuard messages", dropped, delta(xdp, `reason="pass_wireguard"`))
	// Not every datagram sent arrives: with native XDP a veth hands
	// packets to the pre-filter through a ring of 256 that the receiving
	// CPU drains, and on a busy 2-core machine up to a tenth of a 20,000/s
	// spray is lost before it (seen twice in CI: 89.8%). What arrives is
	// dropped by the pre-filter, never by the device (below).
	if dropped < 0.8*float64(spray.Sent()) {
		t.Errorf("the pre-filter dropped %.0f of %d garbage datagrams", dropped, spray.Sent())
	}
	if delta(xdp, `reason="pass_wireguard"`) < 1 {
		t.Error("no WireGuard message of alice's was passed")
	}
	if got := delta("onramp_edge_l3_datagram_drops_total", `reason="malformed"`); got > 0 {
		t.Errorf("the WireGuard device dropped %.0f malformed datagrams: the garbage reached it", got)
	}
	if ok, failed := loop.Counts(); ok == 0 || float64(ok) < 0.95*float64(ok+failed) {
		t.Errorf("alice's pings through the edge during the flood: %d of %d", ok, ok+failed)
	}

	// A flood of initiations (valid mac1) from one /64, 20,000 a second
	// for 5 s: XDP lets 20 a second through (burst 5), alice's source is
	// proven by her handshake and her pings go on.
	alice, err := l3config.ParseClient([]byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.HoldPrefix(ctx, "client", "edge", floodPrefix); err != nil {
		t.Fatal(err)
	}
	const floodTime = 5 * time.Second
	flood, err := client.StartHandshakeFlood(floodPrefix, 40002, netip.AddrPortFrom(testnet.L3Edge6, testnet.L3EdgePort), alice.EdgePublicKey, 20000, floodTime)
	if err != nil {
		t.Fatal(err)
	}
	loop = testnet.StartLoop("alice: UDP ping through the edge", 100*time.Millisecond, func() error {
		return echoOnce(client, lanEcho, time.Second)
	})
	flood.Wait()
	loop.Stop()
	t.Log(flood)
	t.Log(loop)
	m0, m1 = m1, metrics()
	sent, _, _ := flood.Counts()
	limited, passed := delta(xdp, `reason="wireguard_source_rate"`), delta("onramp_edge_l3_handshake_datagrams_received_total", `type="initiation"`)
	t.Logf("the pre-filter refused %.0f initiations for their source's rate; the device received %.0f", limited, passed)
	if most := 5 + 20*(floodTime.Seconds()+2) + 50; passed > most || limited < float64(sent)-most {
		t.Errorf("of %d initiations from one /64, XDP refused %.0f and the device received %.0f: want at most %.0f received", sent, limited, passed, most)
	}
	if ok, failed := loop.Counts(); ok == 0 || float64(ok) < 0.95*float64(ok+failed) {
		t.Errorf("alice's pings through the edge during the handshake flood: %d of %d", ok, ok+failed)
	}

	// The steering program (l3.steering, on by default) put the
	// initiations that passed on the handshake sockets (the flood's on
	// IPv6; an initiation of alice's or the connector's during the flood,
	// a retry, on its family's), and alice's and the connector's
	// transport messages on the loops' sockets.
	const steered = "onramp_edge_l3_steered_datagrams_total"
	if !strings.Contains(out, "steering on") {
		t.Fatalf("the edge did not turn steering on:\n%s", out)
	}
	hs := delta(steered, `family="ipv6"`, `socket="handshake"`) + delta(steered, `family="ipv4"`, `socket="handshake"`)
	loops := testnet.MetricValue(m1, steered, `family="ipv4"`, `socket="loop1"`) + testnet.MetricValue(m1, steered, `family="ipv4"`, `socket="loop2"`) +
		testnet.MetricValue(m1, steered, `family="ipv6"`, `socket="loop1"`) + testnet.MetricValue(m1, steered, `family="ipv6"`, `socket="loop2"`)
	t.Logf("steered during the handshake flood: %.0f to the handshake sockets; since the start %.0f to the loops' sockets", hs, loops)
	if hs < passed {
		t.Errorf("the device received %.0f initiations, the handshake sockets %.0f", passed, hs)
	}
	if loops < float64(okPings(loop)) {
		t.Errorf("%.0f datagrams steered to the loops, fewer than alice's pings", loops)
	}
}

func okPings(l *testnet.Loop) int64 { ok, _ := l.Counts(); return ok }

// siteAndAlice starts site-a's connector in "conn" (198.18.130.0/24,
// fd00:130::/64, the LAN) and brings alice up in "client" through
// wg-quick, returning her configuration.
func siteAndAlice(ctx context.Context, t *testing.T, n *testnet.Net, w *testnet.L3World, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "site-a.yml")
	if _, err := w.AddConnector(ctx, n.Node("conn"), "site-a", path, "198.18.130.0/24", "fd00:130::/64"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.StartConnector(n.Node("conn"), path); err != nil {
		t.Fatal(err)
	}
	conf, err := w.EdgeCLI(ctx, "l3", "client", "add", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Node("client").WGQuickUp(ctx, fmt.Sprintf("onrx%d", os.Getpid()%1000000), []byte(conf)); err != nil {
		t.Fatal(err)
	}
	return conf
}
