package testnet_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l3router/l3config"
	"github.com/onramp-net/onramp/testnet"
)

// TestL3IdlePeers: 10,000 clients that never connect (users who were sent
// a config and never imported it, laptops shut for the holidays) while a
// LAN host sends to every one of them, and a handshake flood on top. The
// edge holds the packets for peers without a session within its budget
// (l3.max_staged_bytes, 16 MiB by default) instead of 128 per peer
// forever (1.8 GB for 10,000), its memory stays bounded, and a real
// client keeps being served.
func TestL3IdlePeers(t *testing.T) {
	if err := testnet.WGQuickAvailable(); err != nil {
		testnet.SkipOrFail(t, "L3 end to end: %v", err)
	}
	const (
		idle      = 10000
		rate      = 8000  // datagrams a second from the LAN host, to each idle client in turn
		size      = 1392  // UDP payload: 1420-byte packets, the MTU
		floodRate = 10000 // spoofed initiations a second
		duration  = 20 * time.Second
		budget    = 16 << 20 // the default l3.max_staged_bytes
	)
	// 10,000 clients do not fit the topology's /20: a /16 of the test
	// range, routed by the LAN host through the connector host.
	pool4 := netip.MustParsePrefix("198.19.0.0/16")
	n := testnet.New(t, testnet.L3())
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := t.TempDir()
	var idleAddrs []netip.Addr
	start := time.Now()
	w, err := testnet.StartL3WorldPrepared(ctx, n, dir, pool4, func(data string) (err error) {
		idleAddrs, err = testnet.AddL3ClientsOffline(data, pool4, testnet.L3Pool6, "idle", idle)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("edge up with %d clients in %v", idle, time.Since(start).Round(100*time.Millisecond))
	cli := func(args ...string) string {
		t.Helper()
		out, err := w.EdgeCLI(ctx, args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	conn, lan, client := n.Node("conn"), n.Node("lan"), n.Node("client")
	if err := lan.IP(ctx, "route", "add", pool4.String(), "via", "198.18.130.1"); err != nil {
		t.Fatal(err)
	}
	siteA := filepath.Join(dir, "site-a.yml")
	if _, err := w.AddConnector(ctx, conn, "site-a", siteA, "198.18.130.0/24", "fd00:130::/64"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.StartConnector(conn, siteA); err != nil {
		t.Fatal(err)
	}
	conf := cli("l3", "client", "add", "alice")
	alice, err := l3config.ParseClient([]byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.WGQuickUp(ctx, fmt.Sprintf("onri%d", os.Getpid()%1000000), []byte(conf)); err != nil {
		t.Fatal(err)
	}
	if _, err := lan.ServeOrigins(); err != nil {
		t.Fatal(err)
	}
	lanEcho := netip.AddrPortFrom(lanAddr(false), testnet.OriginEcho)
	if err := waitFor(15*time.Second, func() bool { return echoOnce(client, lanEcho, time.Second) == nil }); err != nil {
		t.Fatalf("alice does not reach the LAN host: %v", err)
	}
	rss0, hwm0, err := w.Edge.MemStatus()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("edge memory with %d idle clients, before the traffic: RSS %s, peak %s", idle, testnet.MiB(rss0), testnet.MiB(hwm0))

	loop := testnet.StartLoop("alice: UDP ping through the edge", 100*time.Millisecond, func() error {
		return echoOnce(client, lanEcho, time.Second)
	})
	defer loop.Stop()
	spray, err := lan.StartUDPSpray(idleAddrs, 9, size, rate, duration)
	if err != nil {
		t.Fatal(err)
	}
	defer spray.Stop()
	if err := n.HoldPrefix(ctx, "client", "edge", floodPrefix); err != nil {
		t.Fatal(err)
	}
	flood, err := client.StartHandshakeFlood(floodPrefix, 40000, netip.AddrPortFrom(testnet.L3Edge6, testnet.L3EdgePort), alice.EdgePublicKey, floodRate, duration)
	if err != nil {
		t.Fatal(err)
	}
	defer flood.Stop()
	spray.Wait()
	flood.Wait()
	loop.Stop()
	rss, hwm, err := w.Edge.MemStatus()
	if err != nil {
		t.Fatal(err)
	}
	m, err := w.EdgeMetrics()
	if err != nil {
		t.Fatal(err)
	}
	staged := func(reason string) float64 {
		return testnet.MetricValue(m, "onramp_edge_l3_staged_drops_total", `reason="`+reason+`"`)
	}
	held, heldBytes := testnet.MetricValue(m, "onramp_edge_l3_staged_packets"), testnet.MetricValue(m, "onramp_edge_l3_staged_bytes")
	t.Log(spray)
	t.Log(flood)
	t.Log(loop)
	t.Logf("edge: %v packets (%s) held for clients without a session; dropped: %v for l3.max_staged_bytes, %v for a peer's 128, %v expired",
		held, testnet.MiB(int64(heldBytes)), staged("device_full"), staged("peer_full"), staged("expired"))
	t.Logf("edge memory after: RSS %s, peak %s", testnet.MiB(rss), testnet.MiB(hwm))

	if heldBytes > budget || staged("device_full") == 0 {
		t.Errorf("the edge holds %s for idle peers and dropped %v for its budget: want at most %s held, and the spray of %d packets to go over it",
			testnet.MiB(int64(heldBytes)), staged("device_full"), testnet.MiB(budget), spray.Sent())
	}
	// The packets held, with the garbage collector's headroom (twice the
	// live heap), and the flood's share: the handshake flood alone, in
	// TestL3Hardening, stays under 200 MiB all told.
	if limit := rss0 + 3*budget + 64<<20; hwm > limit {
		t.Errorf("edge peak RSS %s, want at most %s (%s before the traffic, three times the staging budget and 64 MiB)",
			testnet.MiB(hwm), testnet.MiB(limit), testnet.MiB(rss0))
	}
	if r := loop.Rate(); r < 0.99 {
		t.Errorf("alice's success rate with 10,000 idle peers, the spray and the flood: %.1f%%, want at least 99%%", 100*r)
	}
}
