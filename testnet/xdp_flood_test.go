package testnet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onramp-net/onramp/testnet"
)

// The spoofed sources of the floods of TestEdgeUnderFire: addresses no
// node of the test network holds (the edge's answers to them go nowhere).
var (
	fireFrom4 = netip.MustParsePrefix("198.19.0.0/16")
	fireFrom6 = netip.MustParsePrefix("fd00:f100::/32")
)

// TestEdgeUnderFire: the edge runs both on-ramps, the WireGuard hub (a
// stock wireguard-go client in "client" through the edge and an L3
// connector to a LAN) and an L4 tunnel over QUIC (its connector in
// "conn2"), with its XDP pre-filter on eth0 (toward the client, whose
// traffic crosses it) and eth2 (toward conn2).
// For 30 s an attacker in conn2 floods both UDP ports (WireGuard and the
// tunnel's QUIC) from spoofed sources over IPv4 and IPv6: random bytes,
// truncated WireGuard messages, short QUIC Initials (dropped for their
// shape), WireGuard initiations and full-size QUIC Initials with random
// content (they meet the rate limits), while the client runs iperf3
// through WireGuard and a user downloads through the tunnel again and
// again. The XDP counters rise by each kind, both transfers go on, and the
// edge's resident memory stays within 64 MiB of what it was before.
//
// The client's bulk transfer through the pre-filter is what caught the
// pre-filter dropping full-sized WireGuard packets (their padding stops at
// the MTU, so their length is no multiple of 16).
func TestEdgeUnderFire(t *testing.T) {
	if err := testnet.WGQuickAvailable(); err != nil {
		testnet.SkipOrFail(t, "L3 end to end: %v", err)
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		testnet.SkipOrFail(t, "iperf3: %v", err)
	}
	const (
		floodTime = 30 * time.Second
		floodRate = 30000 // a second, per port (both families, three kinds)
		tunnel    = "fire"
	)
	n := testnet.New(t, testnet.L3())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	// One edge, both on-ramps: the L3 world's configuration with the
	// tunnel listener, a binding of the tunnel's source origin and the
	// pre-filter on eth0 (the client's side) and eth2 (conn2's).
	w, err := testnet.StartL3WorldYAML(ctx, n, dir, func(data string) string {
		y := strings.Replace(testnet.L3EdgeYAML(data, ""), `tunnels: ""`, fmt.Sprintf(`tunnels: "[::]:%d"`, testnet.EdgeTunnelPort), 1)
		return y + fmt.Sprintf(`advertise: ["198.18.121.1:%[1]d"]
bindings:
  - {listen: "tcp://[::]:%[2]d", tunnel: %[3]s, service: source.internal}
xdp:
  interfaces: [eth0, eth2]
`, testnet.EdgeTunnelPort, testnet.EdgeSourcePort, tunnel)
	})
	if err != nil {
		t.Fatal(err)
	}
	out := w.Edge.Output()
	if c := strings.Count(out, "xdp pre-filter attached"); c != 2 {
		t.Fatalf("the edge attached its pre-filter to %d interfaces, want 2:\n%s", c, out)
	}

	// The L3 on-ramp: site-a's connector, the client through wg-quick,
	// iperf3 -s on the LAN host.
	siteAndAlice(ctx, t, n, w, dir)
	client, lan, attacker := n.Node("client"), n.Node("lan"), n.Node("conn2")
	if _, err := lan.Start("iperf3", "-s", "-p", "5201"); err != nil {
		t.Fatal(err)
	}
	iperfAddr := net.JoinHostPort(lanAddr(false).String(), "5201")
	if err := waitFor(10*time.Second, func() bool {
		c, err := client.Dial("tcp", iperfAddr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}); err != nil {
		t.Fatalf("iperf3 -s on the LAN host not reachable through WireGuard: %v", err)
	}

	// The L4 tunnel: its connector in conn2, the origins in lan2.
	token, err := w.EdgeCLI(ctx, "tunnel", "create", tunnel)
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, tunnel+".token")
	if err := os.WriteFile(tokenFile, []byte(strings.TrimSpace(token)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Node("lan2").ServeOrigins(); err != nil {
		t.Fatal(err)
	}
	rig := &testnet.TunnelRig{Net: n, Dir: dir, ConnectorBin: w.ConnectorBin, TokenFile: tokenFile}
	conn, err := rig.StartConnector(n.Node("conn2"), tunnel, "quic", fmt.Sprintf("ingress:\n  - {hostname: source.internal, service: \"tcp://%s:%d\"}\n  - service: \"http_status:404\"\n",
		lan2Addr(false), testnet.OriginSource))
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.WaitReady(20 * time.Second); err != nil {
		t.Fatalf("%v\n%s", err, conn.Output())
	}
	source := net.JoinHostPort(testnet.L3Edge4.String(), fmt.Sprint(testnet.EdgeSourcePort))
	if _, err := client.Download(source, 1<<20); err != nil {
		t.Fatalf("download through the tunnel before the flood: %v", err)
	}

	metrics := func() string {
		t.Helper()
		m, err := w.EdgeMetrics()
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	rss0, _, err := w.Edge.MemStatus()
	if err != nil {
		t.Fatal(err)
	}
	m0 := metrics()

	// The real traffic: iperf3 through WireGuard for the flood's time,
	// downloads of 16 MiB through the tunnel one after another.
	type iperfOut struct {
		out []byte
		err error
	}
	iperfDone := make(chan iperfOut, 1)
	go func() {
		cmd := client.Command(ctx, "iperf3", "-c", lanAddr(false).String(), "-p", "5201", "-t", fmt.Sprint(int(floodTime.Seconds())), "-J")
		out, err := cmd.Output()
		iperfDone <- iperfOut{out, err}
	}()
	var (
		tunnelBytes, downloads, failed atomic.Int64
		lastTunnelErr                  atomic.Pointer[error]
		stopTunnel                     = make(chan struct{})
		tunnelWG                       sync.WaitGroup
	)
	const chunk = 16 << 20
	tunnelStart := time.Now()
	tunnelWG.Add(1)
	go func() {
		defer tunnelWG.Done()
		for {
			select {
			case <-stopTunnel:
				return
			default:
			}
			if _, err := client.Download(source, chunk); err != nil {
				failed.Add(1)
				lastTunnelErr.Store(&err)
				time.Sleep(100 * time.Millisecond)
				continue
			}
			downloads.Add(1)
			tunnelBytes.Add(chunk)
		}
	}()

	// The floods, one per port, each over both families.
	kindsWG := []testnet.FloodKind{testnet.FloodRandom, testnet.FloodTruncatedWG, testnet.FloodInitiation}
	kindsQUIC := []testnet.FloodKind{testnet.FloodRandom, testnet.FloodShortInitial, testnet.FloodInitial}
	flood := func(port uint16, kinds []testnet.FloodKind) *testnet.UDPFlood {
		t.Helper()
		f, err := attacker.StartUDPFlood(testnet.FloodOptions{
			Targets: []testnet.FloodTarget{
				{Dst: netip.AddrPortFrom(testnet.L3Edge4, port), Kinds: kinds},
				{Dst: netip.AddrPortFrom(testnet.L3Edge6, port), Kinds: kinds},
			},
			From4: fireFrom4, From6: fireFrom6, Rate: floodRate, Duration: floodTime, Batch: 16,
		})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	fwg := flood(testnet.L3EdgePort, kindsWG)
	fquic := flood(testnet.EdgeTunnelPort, kindsQUIC)
	defer fwg.Stop()
	defer fquic.Stop()
	fwg.Wait()
	fquic.Wait()
	t.Log("WireGuard port: ", fwg)
	t.Log("QUIC port: ", fquic)
	var ip iperfOut
	select {
	case ip = <-iperfDone:
	case <-time.After(20 * time.Second):
		t.Fatal("iperf3 did not end 20 s after the flood")
	}
	close(stopTunnel)
	tunnelWG.Wait()
	tunnelTime := time.Since(tunnelStart)
	m1 := metrics()
	rss1, peak, err := w.Edge.MemStatus()
	if err != nil {
		t.Fatal(err)
	}

	// The real traffic went on.
	if ip.err != nil {
		t.Errorf("iperf3 through WireGuard during the flood: %v\n%s", ip.err, ip.out)
	} else {
		var r struct {
			End struct {
				SumReceived struct {
					Bytes         float64 `json:"bytes"`
					BitsPerSecond float64 `json:"bits_per_second"`
				} `json:"sum_received"`
			} `json:"end"`
		}
		if err := json.Unmarshal(ip.out, &r); err != nil {
			t.Errorf("iperf3 output: %v\n%s", err, ip.out)
		}
		t.Logf("iperf3 through WireGuard during the flood: %.0f MB, %.1f Mbit/s", r.End.SumReceived.Bytes/1e6, r.End.SumReceived.BitsPerSecond/1e6)
		if r.End.SumReceived.Bytes <= 0 {
			t.Errorf("iperf3 moved nothing through WireGuard during the flood:\n%s", ip.out)
		}
	}
	t.Logf("the tunnel during the flood: %d downloads of 16 MiB (%.1f Mbit/s), %d failed", downloads.Load(),
		float64(tunnelBytes.Load())*8/tunnelTime.Seconds()/1e6, failed.Load())
	if downloads.Load() == 0 {
		var last error
		if p := lastTunnelErr.Load(); p != nil {
			last = *p
		}
		t.Errorf("no download through the tunnel completed during the flood (last error %v)", last)
	}

	// XDP dropped each kind.
	const xdp = "onramp_edge_xdp_packets_total"
	delta := func(name string, reasons ...string) float64 {
		var d float64
		for _, r := range reasons {
			l := fmt.Sprintf("reason=%q", r)
			d += testnet.MetricValue(m1, name, l) - testnet.MetricValue(m0, name, l)
		}
		return d
	}
	ceiling := 2000*(floodTime.Seconds()+5) + 2000 // the default unproven ceiling and burst, over both ports
	for _, c := range []struct {
		what    string
		reasons []string
		want    float64
	}{
		{"random bytes at the WireGuard port", []string{"wireguard_type", "wireguard_reserved", "wireguard_truncated"}, 0.5 * float64(fwg.Sent(testnet.FloodRandom))},
		{"truncated WireGuard messages", []string{"wireguard_length"}, 0.5 * float64(fwg.Sent(testnet.FloodTruncatedWG))},
		{"WireGuard initiations over the rate limits", []string{"wireguard_source_rate", "wireguard_global_rate"}, 0.5*float64(fwg.Sent(testnet.FloodInitiation)) - ceiling},
		{"random bytes at the QUIC port", []string{"quic_fixed_bit", "quic_truncated", "quic_conn_id_length"}, 0.15 * float64(fquic.Sent(testnet.FloodRandom))},
		{"short QUIC Initials", []string{"quic_small_initial"}, 0.5 * float64(fquic.Sent(testnet.FloodShortInitial))},
		{"QUIC Initials over the rate limits", []string{"quic_source_rate", "quic_global_rate"}, 0.5*float64(fquic.Sent(testnet.FloodInitial)) - ceiling},
	} {
		got := delta(xdp, c.reasons...)
		t.Logf("XDP dropped %.0f for %s (%s)", got, c.what, strings.Join(c.reasons, ", "))
		if got < max(c.want, 1000) {
			t.Errorf("XDP dropped %.0f for %s: want at least %.0f", got, c.what, max(c.want, 1000))
		}
	}
	t.Logf("XDP passed %.0f WireGuard and %.0f QUIC datagrams", delta(xdp, "pass_wireguard"), delta(xdp, "pass_quic"))
	if got := delta("onramp_edge_l3_datagram_drops_total", "malformed"); got > 0 {
		t.Errorf("the WireGuard device dropped %.0f malformed datagrams: garbage reached it", got)
	}

	// The edge's memory stayed flat.
	t.Logf("edge RSS: %s before the flood, %s after (peak %s)", testnet.MiB(rss0), testnet.MiB(rss1), testnet.MiB(peak))
	if rss1-rss0 > 64<<20 {
		t.Errorf("the edge's RSS grew by %s under the flood, want under 64 MiB", testnet.MiB(rss1-rss0))
	}
}
