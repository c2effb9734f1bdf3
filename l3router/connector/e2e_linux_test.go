package connector

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l3router/l3config"
	"github.com/onramp-net/onramp/testnet"
)

// l3World is a connector host between a stock WireGuard peer playing the
// edge and a LAN host:
//
//	edge eth0 198.18.20.1 fd00:20::1  <->  conn eth0 198.18.20.2 fd00:20::2
//	conn eth1 198.18.30.1 fd00:30::1  <->  lan  eth0 198.18.30.2 fd00:30::2
//
// The edge node runs wireguard-go configured by wg-quick with a client's
// virtual addresses (198.18.96.10, fd00:96::10) and the connector as its
// peer; it has no route to the LAN but through WireGuard. The LAN host
// routes the client pools (198.18.96.0/20, fd00:96::/48) via the connector
// host, which forwards only if the connector turned forwarding on.
func l3World() testnet.Topology {
	return testnet.Topology{
		Name: "l3conn",
		Nodes: []testnet.NodeSpec{
			{Name: "edge"},
			{Name: "conn"},
			{Name: "lan", Routes: []testnet.Route{
				{Dst: pfx("198.18.96.0/20"), Via: netip.MustParseAddr("198.18.30.1")},
				{Dst: pfx("fd00:96::/48"), Via: netip.MustParseAddr("fd00:30::1")},
			}},
		},
		Links: []testnet.LinkSpec{
			{A: "edge", B: "conn",
				AAddr: []netip.Prefix{pfx("198.18.20.1/24"), pfx("fd00:20::1/64")},
				BAddr: []netip.Prefix{pfx("198.18.20.2/24"), pfx("fd00:20::2/64")}},
			{A: "conn", B: "lan",
				AAddr: []netip.Prefix{pfx("198.18.30.1/24"), pfx("fd00:30::1/64")},
				BAddr: []netip.Prefix{pfx("198.18.30.2/24"), pfx("fd00:30::2/64")}},
		},
	}
}

var (
	client4 = netip.MustParseAddr("198.18.96.10")
	client6 = netip.MustParseAddr("fd00:96::10")
	lan4    = netip.MustParseAddr("198.18.30.2")
	lan6    = netip.MustParseAddr("fd00:30::2")
)

const metricsAddr = "127.0.0.1:9200"

func connectorBinary(tb testing.TB) string {
	tb.Helper()
	bin, err := testnet.BuildBinary(testnet.ConnectorPkg)
	if err != nil {
		tb.Fatal(err)
	}
	return bin
}

// TestConnectorBinary runs `connector l3 run` in the conn node with a stock
// WireGuard peer as its edge, over an IPv4 and an IPv6 underlay, and checks
// what a user would: ping, TCP and UDP from the client's address to the
// LAN host, which sees that address as the source, a TCP connection the LAN
// host opens to the client, /ready and /metrics, the log, and that SIGTERM
// removes the interface and its routes.
func TestConnectorBinary(t *testing.T) {
	for _, underlay := range []string{"198.18.20.1", "fd00:20::1"} {
		t.Run("underlay "+underlay, func(t *testing.T) { testConnectorBinary(t, underlay) })
	}
}

// l3Rig is l3World with the stock WireGuard peer up in "edge" and the
// connector's configuration written, not started.
type l3Rig struct {
	n               *testnet.Net
	edge, conn, lan *testnet.Node
	cfg             *l3config.Connector
	path            string // of l3.yml
}

func newL3Rig(tb testing.TB, edgeAddr string) *l3Rig {
	tb.Helper()
	n := testnet.New(tb, l3World())
	r := &l3Rig{n: n, edge: n.Node("edge"), conn: n.Node("conn"), lan: n.Node("lan"), cfg: testConfig(tb)}
	edgeKey, err := l3config.GeneratePrivateKey()
	if err != nil {
		tb.Fatal(err)
	}
	r.cfg.Edge.PublicKey = edgeKey.PublicKey()
	r.cfg.Edge.Endpoint = net.JoinHostPort(edgeAddr, "51820")
	wgConf := fmt.Sprintf(`[Interface]
PrivateKey = %s
ListenPort = 51820
Address = %s/32, %s/128

[Peer]
PublicKey = %s
AllowedIPs = 198.18.30.0/24, fd00:30::/64, 198.18.96.2/32, fd00:96::2/128
`, edgeKey, client4, client6, r.cfg.PrivateKey.PublicKey())
	if _, err := r.edge.WGQuickUp(context.Background(), uniqueIface("onrwg"), []byte(wgConf)); err != nil {
		if err := testnet.WGQuickAvailable(); err != nil {
			testnet.SkipOrFail(tb, "%v", err)
		}
		tb.Fatal(err)
	}
	yml, err := r.cfg.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	r.path = filepath.Join(tb.TempDir(), "l3.yml")
	if err := os.WriteFile(r.path, yml, 0o600); err != nil {
		tb.Fatal(err)
	}
	return r
}

// uniqueIface returns an interface name unique on the machine (for
// wireguard-go, whose control sockets are not per namespace).
func uniqueIface(prefix string) string {
	var r [3]byte
	_, _ = rand.Read(r[:])
	return prefix + hex.EncodeToString(r[:])
}

// startConnector runs `connector l3 run` in "conn" and waits until it is
// ready (a handshake with the stock peer).
func (r *l3Rig) startConnector(tb testing.TB) *testnet.Proc {
	tb.Helper()
	p, err := r.conn.Start(connectorBinary(tb), "l3", "run", "--config", r.path, "--metrics", metricsAddr)
	if err != nil {
		tb.Fatal(err)
	}
	c := &testnet.Connector{Proc: p, Node: r.conn, Metrics: metricsAddr}
	if err := c.WaitReady(20 * time.Second); err != nil {
		tb.Fatalf("%v\n%s", err, p.Output())
	}
	return p
}

func testConnectorBinary(t *testing.T, edgeAddr string) {
	r := newL3Rig(t, edgeAddr)
	ctx := context.Background()
	edge, conn, lan := r.edge, r.conn, r.lan
	// Strict reverse-path filtering, a common distribution default, must
	// not get in the way.
	if err := conn.Sysctl("net/ipv4/conf/all/rp_filter", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := lan.ServeOrigins(); err != nil {
		t.Fatal(err)
	}
	p := r.startConnector(t)

	for _, fam := range []struct {
		name        string
		client, lan netip.Addr
	}{{"IPv4", client4, lan4}, {"IPv6", client6, lan6}} {
		t.Run(fam.name, func(t *testing.T) {
			at := func(a netip.Addr, port int) string { return net.JoinHostPort(a.String(), strconv.Itoa(port)) }
			if _, err := edge.Run(ctx, "ping", "-c", "2", "-i", "0.2", "-W", "2", fam.lan.String()); err != nil {
				t.Errorf("client pings the LAN host: %v", err)
			}
			if _, err := lan.Run(ctx, "ping", "-c", "2", "-i", "0.2", "-W", "2", fam.client.String()); err != nil {
				t.Errorf("LAN host pings the client: %v", err)
			}
			status, body, err := edge.HTTPGet(at(fam.lan, testnet.OriginHTTP), "lan", "/")
			if err != nil || status != 200 {
				t.Fatalf("client's HTTP to the LAN host: %d %v", status, err)
			}
			if !strings.Contains(body, "from="+net.JoinHostPort(fam.client.String(), "")) {
				t.Errorf("the LAN host did not see the client's virtual address as the source: %q", body)
			}
			// Segments both ways through the offloads, checked end to end.
			if _, err := edge.Upload(at(fam.lan, testnet.OriginSum), 8<<20); err != nil {
				t.Errorf("upload: %v", err)
			}
			if _, err := edge.Download(at(fam.lan, testnet.OriginSource), 8<<20); err != nil {
				t.Errorf("download: %v", err)
			}
			if err := edge.UDPEcho(at(fam.lan, testnet.OriginEcho), 20); err != nil {
				t.Errorf("UDP echo: %v", err)
			}
			// The LAN host opens a connection to the client.
			from, err := acceptOne(t, edge, lan, at(fam.client, 7100))
			if err != nil {
				t.Fatalf("LAN host to client: %v", err)
			}
			if from != fam.lan {
				t.Errorf("the client saw the LAN host's connection from %v, want %v", from, fam.lan)
			}
		})
	}

	// The handshake line comes within a second of the handshake.
	out := p.Output()
	for _, want := range []string{
		`msg="l3 connector up" name=site-a interface=onr0 mtu=1420 addresses=198.18.96.2/32,fd00:96::2/128 routes=198.18.96.0/20,fd00:96::/48`,
		`offloads="tun: csum tso4 tso6`,
		`msg="forwarding enabled"`,
		`msg="handshake with the edge complete"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}

	metrics := scrape(t, conn)
	for _, m := range []string{
		`onramp_connector_l3_packets_total{direction="to_edge"}`,
		`onramp_connector_l3_packets_total{direction="from_edge"}`,
		`onramp_connector_l3_bytes_total{direction="from_edge"}`,
		`onramp_connector_l3_wireguard_bytes_total{direction="rx"}`,
		`onramp_connector_l3_last_handshake_timestamp_seconds`,
		`onramp_connector_l3_ready`,
	} {
		if v := metrics[m]; v <= 0 {
			t.Errorf("%s = %v, want > 0", m, v)
		}
	}
	// 8 MiB went each way per family.
	if v := metrics[`onramp_connector_l3_bytes_total{direction="from_edge"}`]; v < 16<<20 {
		t.Errorf("from_edge bytes %v, want at least the uploads", v)
	}

	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("connector did not stop within 10s of SIGTERM")
	}
	if err := p.Wait(); err != nil {
		t.Fatalf("connector exited with %v after SIGTERM:\n%s", err, p.Output())
	}
	if !strings.Contains(p.Output(), `msg="l3 connector stopped"`) {
		t.Errorf("no stop line in the log:\n%s", p.Output())
	}
	if out, err := conn.Run(ctx, "ip", "link", "show", "onr0"); err == nil {
		t.Errorf("onr0 still there after SIGTERM:\n%s", out)
	}
	if out := run(t, conn, "ip", "-6", "route", "show", "fd00:96::/48"); strings.TrimSpace(out) != "" {
		t.Errorf("route left after SIGTERM: %s", out)
	}
}

// acceptOne listens on addr in the server node, connects from the client
// node, exchanges a line each way, and returns the source address the
// server saw.
func acceptOne(t *testing.T, server, client *testnet.Node, addr string) (netip.Addr, error) {
	t.Helper()
	var ln net.Listener
	if err := server.Do(func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		return netip.Addr{}, err
	}
	defer ln.Close()
	type result struct {
		from netip.Addr
		err  error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err == nil {
			_, err = fmt.Fprintf(c, "got %s", line)
		}
		done <- result{from: c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap(), err: err}
	}()
	c, err := client.Dial("tcp", addr)
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "hello\n"); err != nil {
		return netip.Addr{}, err
	}
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || reply != "got hello\n" {
		return netip.Addr{}, fmt.Errorf("reply %q: %v", reply, err)
	}
	r := <-done
	return r.from, r.err
}

var metricLine = regexp.MustCompile(`^([a-z_0-9]+(?:\{[^}]*\})?) (\S+)$`)

// scrape reads the connector's /metrics inside node.
func scrape(t *testing.T, node *testnet.Node) map[string]float64 {
	t.Helper()
	resp, err := node.HTTPClient(5 * time.Second).Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if sm := metricLine.FindStringSubmatch(line); sm != nil {
			v, err := strconv.ParseFloat(sm[2], 64)
			if err == nil {
				m[sm[1]] = v
			}
		}
	}
	return m
}

// TestConnectorBinaryRefuses runs the binary where it must refuse: a bad
// l3.yml (named field, for run and check) and a user without
// CAP_NET_ADMIN (the failing step named, with the likely cause). Nothing
// is created in either case, so it runs in the test's own namespace.
func TestConnectorBinaryRefuses(t *testing.T) {
	bin := connectorBinary(t)
	cfg := testConfig(t)
	good, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Replace(good, []byte("- 198.18.96.0/20"), []byte("- 198.18.30.0/23"), 1)
	if bytes.Equal(bad, good) {
		t.Fatal("test edit not applied")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.yml")
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"run", "check"} {
		out, err := exec.Command(bin, "l3", sub, "--config", path).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "bad.yml: routes[0]: 198.18.30.0/23 overlaps subnets[0] 198.18.30.0/24") {
			t.Errorf("l3 %s with a bad file: %v\n%s", sub, err, out)
		}
	}
	out, err := exec.Command(bin, "l3", "check", "--config", filepath.Join(dir, "missing.yml")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "missing.yml: no such file") {
		t.Errorf("l3 check with a missing file: %v\n%s", err, out)
	}

	// As an unprivileged user (nobody when the test runs as root). The
	// binary and the configuration (a throwaway key) must be readable by
	// it: both go into a world-readable directory.
	cmdDir := t.TempDir()
	for _, d := range []string{cmdDir, filepath.Dir(cmdDir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	exe, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	userBin := filepath.Join(cmdDir, "connector")
	if err := os.WriteFile(userBin, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	userConf := filepath.Join(cmdDir, "l3.yml")
	if err := os.WriteFile(userConf, good, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(userBin, "l3", "run", "--config", userConf)
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "create TUN onr0: ") || !strings.Contains(string(out), "are you root?") {
		t.Errorf("l3 run without privileges: %v\n%s", err, out)
	}
}

// startStock is the baseline for the connector: a stock wireguard-go set
// up by wg-quick in "conn" with the connector's key, addresses and routes,
// and kernel forwarding on, as a user would run it without onramp.
func (r *l3Rig) startStock(tb testing.TB) {
	tb.Helper()
	conf := fmt.Sprintf(`[Interface]
PrivateKey = %s
Address = 198.18.96.2/32, fd00:96::2/128

[Peer]
PublicKey = %s
Endpoint = %s
PersistentKeepalive = 25
AllowedIPs = 198.18.96.0/20, fd00:96::/48
`, r.cfg.PrivateKey, r.cfg.Edge.PublicKey, r.cfg.Edge.Endpoint)
	if _, err := r.conn.WGQuickUp(context.Background(), uniqueIface("onrst"), []byte(conf)); err != nil {
		tb.Fatal(err)
	}
	for _, k := range []string{"net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"} {
		if err := r.conn.Sysctl(k, "1"); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkConnectorLeg measures TCP throughput from a stock WireGuard
// client ("edge") to the LAN host through the connector host with iperf3,
// 3 seconds an iteration: "onramp" runs `connector l3 run` on the
// connector host, "stock" runs stock wireguard-go there (see startStock).
// It reports the receiver's Gbit/s; compare the two in one run:
//
//	go test -run XXX -bench ConnectorLeg ./l3router/connector
func BenchmarkConnectorLeg(b *testing.B) {
	for _, peer := range []string{"onramp", "stock"} {
		for _, streams := range []int{1, 4} {
			b.Run(fmt.Sprintf("%s/streams=%d", peer, streams), func(b *testing.B) {
				r := newL3Rig(b, "198.18.20.1")
				if peer == "onramp" {
					r.startConnector(b)
				} else {
					r.startStock(b)
				}
				if _, err := r.lan.Start("iperf3", "-s", "-B", lan4.String()); err != nil {
					b.Fatal(err)
				}
				var sum float64
				runs := 0
				for b.Loop() {
					sum += iperf3(b, r.edge, lan4, streams)
					runs++
				}
				b.ReportMetric(sum/float64(runs), "Gbit/s")
			})
		}
	}
}

// iperf3 runs an iperf3 client in node against dst for 3 seconds and
// returns the receiver's throughput in Gbit/s, retrying for up to 5
// seconds while the server is not ready.
func iperf3(tb testing.TB, node *testnet.Node, dst netip.Addr, streams int) float64 {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := node.Command(context.Background(), "iperf3", "-c", dst.String(), "-t", "3",
			"-P", strconv.Itoa(streams), "-J").Output()
		var res struct {
			Error string `json:"error"`
			End   struct {
				SumReceived struct {
					BitsPerSecond float64 `json:"bits_per_second"`
				} `json:"sum_received"`
			} `json:"end"`
		}
		jerr := json.Unmarshal(out, &res)
		if err == nil && jerr == nil && res.Error == "" && res.End.SumReceived.BitsPerSecond > 0 {
			return res.End.SumReceived.BitsPerSecond / 1e9
		}
		if time.Now().After(deadline) {
			tb.Fatalf("iperf3: %v %v %s\n%s", err, jerr, res.Error, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
