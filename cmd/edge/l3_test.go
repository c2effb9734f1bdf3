package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skip2/go-qrcode"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/onramp-net/onramp/dataplane/packet"
	"github.com/onramp-net/onramp/l3router/l3config"
)

// edgeCLI runs the edge binary built for the test with one config file.
type edgeCLI struct {
	bin, config, data string
}

func (e *edgeCLI) run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.bin, append([]string{"--config", e.config}, args...)...)
	var o, s bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &s
	err = cmd.Run()
	return o.String(), s.String(), err
}

func (e *edgeCLI) mustRun(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	o, s, err := e.run(t, args...)
	if err != nil {
		t.Fatalf("edge %s: %v\n%s", strings.Join(args, " "), err, s)
	}
	return o, s
}

// listRow is a row of `edge l3 client list` or `connector list`.
type listRow struct {
	name, addresses, extra, key, handshake, endpoint, loop, rx, tx, drops string
}

var columns = regexp.MustCompile(`\s{2,}`)

func (e *edgeCLI) list(t *testing.T, kind string) map[string]listRow {
	t.Helper()
	out, _ := e.mustRun(t, "l3", kind, "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if !strings.HasPrefix(lines[0], "NAME") {
		t.Fatalf("list header %q", lines[0])
	}
	rows := map[string]listRow{}
	for _, l := range lines[1:] {
		if strings.HasPrefix(l, "(") {
			continue
		}
		f := columns.Split(strings.TrimSpace(l), -1)
		if len(f) != 10 {
			t.Fatalf("list row %q: %d columns", l, len(f))
		}
		rows[f[0]] = listRow{f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9]}
	}
	return rows
}

// freeTunnelPort returns a port free for both TCP and UDP on 127.0.0.1, for
// a tunnel listener (QUIC and HTTP/2 on one port). It is drawn below the
// kernel's ephemeral range (32768 and up), which the listeners on port 0 of
// tests running beside this one take from: a port found free there could
// be another test's by the time the edge binds it.
func freeTunnelPort(t *testing.T) int {
	t.Helper()
	for range 100 {
		port := 20000 + rand.IntN(12000)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		c, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err != nil {
			continue
		}
		c.Close()
		return port
	}
	t.Fatal("no port free for both TCP and UDP in 20000-31999")
	return 0
}

func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func newEdgeCLI(t *testing.T) (*edgeCLI, int, int) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "edge")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	wgPort, metricsPort := freePort(t, "udp"), freePort(t, "tcp")
	e := &edgeCLI{bin: bin, config: filepath.Join(dir, "edge.yml"), data: filepath.Join(dir, "data")}
	cfg := fmt.Sprintf(`data: %s
listen: {tunnels: "127.0.0.1:0", metrics: "127.0.0.1:%d"}
l3:
  listen: "[::]:%d"
  endpoint: "127.0.0.1:%d"
  pools: {ipv4: 198.18.96.0/20, ipv6: "fd00:96::/48"}
  dns: [198.18.30.53]
  handshakes: {per_second: 1500, max_sources: 4096}
`, e.data, metricsPort, wgPort, wgPort)
	if err := os.WriteFile(e.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return e, wgPort, metricsPort
}

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// TestL3CLI runs the built edge binary: the configs it prints match what it
// lists, --public-key keeps the private key out, and remove works offline
// and on a running edge, where the printed configs carry real traffic and a
// removed client is cut at once.
func TestL3CLI(t *testing.T) {
	e, wgPort, metricsPort := newEdgeCLI(t)

	// Offline: a connector with the key it made (connector l3 init), a
	// client with a generated key, one with its own.
	siteKey, _ := l3config.GeneratePrivateKey()
	yml, _ := e.mustRun(t, "l3", "connector", "add", "site-a", "--subnet", "198.18.30.0/24", "--subnet", "fd00:30::/64",
		"--public-key", siteKey.PublicKey().String())
	site, err := l3config.ParseConnector([]byte(yml))
	if err != nil {
		t.Fatalf("connector config: %v\n%s", err, yml)
	}
	if !site.PrivateKey.IsZero() || site.PrivateKeyFile != l3config.DefaultKeyFile {
		t.Fatalf("connector config holds a key or no key file:\n%s", yml)
	}
	site.PrivateKey = siteKey // what connector l3 run reads from the key file
	if !slices.Equal(site.Subnets, prefixes("198.18.30.0/24", "fd00:30::/64")) || !slices.Equal(site.Routes, prefixes("198.18.96.0/20", "fd00:96::/48")) ||
		site.Edge.Endpoint != fmt.Sprintf("127.0.0.1:%d", wgPort) || !slices.Equal(site.Addresses, prefixes("198.18.96.2/32", "fd00:96::2/128")) {
		t.Fatalf("connector config %+v", site)
	}

	confPath := filepath.Join(t.TempDir(), "alice.conf")
	_, stderr := e.mustRun(t, "l3", "client", "add", "alice", "--group", "eng", "--out", confPath, "--qr")
	conf, err := os.ReadFile(confPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(confPath); fi.Mode().Perm() != 0o600 {
		t.Fatalf("config file mode %v", fi.Mode())
	}
	alice, err := l3config.ParseClient(conf)
	if err != nil {
		t.Fatalf("client config: %v\n%s", err, conf)
	}
	if alice.PrivateKey.IsZero() || alice.EdgePublicKey != site.Edge.PublicKey || alice.Endpoint != site.Edge.Endpoint ||
		!slices.Equal(alice.Addresses, prefixes("198.18.96.3/32", "fd00:96::3/128")) || alice.MTU != 1420 || alice.Keepalive != 25 ||
		!slices.Equal(alice.AllowedIPs, prefixes("198.18.96.0/20", "fd00:96::/48", "198.18.30.0/24", "fd00:30::/64")) ||
		!slices.Equal(alice.DNS, []string{"198.18.30.53"}) {
		t.Fatalf("client config:\n%s", conf)
	}
	checkQR(t, stderr, conf)
	wgQuickAccepts(t, conf)

	bobKey, _ := l3config.GeneratePrivateKey()
	bobConf, _ := e.mustRun(t, "l3", "client", "add", "bob", "--public-key", bobKey.PublicKey().String())
	if strings.Contains(bobConf, bobKey.String()) || regexp.MustCompile(`(?m)^PrivateKey`).MatchString(bobConf) {
		t.Fatalf("--public-key config has a private key:\n%s", bobConf)
	}
	bob, err := l3config.ParseClient([]byte(bobConf))
	if err != nil || bob.PublicKey != bobKey.PublicKey() {
		t.Fatalf("bob's config: %v\n%s", err, bobConf)
	}
	wgQuickAccepts(t, []byte(strings.Replace(bobConf, "# PrivateKey = <", "PrivateKey = "+bobKey.String()+" # <", 1)))

	rows := e.list(t, "client")
	if a := rows["alice"]; a.key != alice.PrivateKey.PublicKey().String() || a.addresses != "198.18.96.3,fd00:96::3" || a.extra != "eng" || a.handshake != "-" {
		t.Fatalf("alice listed as %+v", a)
	}
	if b := rows["bob"]; b.key != bobKey.PublicKey().String() || b.addresses != joinAddrs(bob.Addresses) || b.extra != "-" {
		t.Fatalf("bob listed as %+v", b)
	}
	if c := e.list(t, "connector")["site-a"]; c.key != siteKey.PublicKey().String() || c.extra != "198.18.30.0/24,fd00:30::/64" {
		t.Fatalf("site-a listed as %+v", c)
	}

	// Refusals name the reason.
	siteBKey, _ := l3config.GeneratePrivateKey()
	if _, s, err := e.run(t, "l3", "connector", "add", "site-b", "--subnet", "198.18.30.128/25", "--public-key", siteBKey.PublicKey().String()); err == nil || !strings.Contains(s, `overlaps subnet 198.18.30.0/24 of connector "site-a"`) {
		t.Fatalf("overlapping subnet: %v %s", err, s)
	}
	if _, s, err := e.run(t, "l3", "client", "add", "carol", "--public-key", "nope"); err == nil || !strings.Contains(s, "--public-key: not a WireGuard key") {
		t.Fatalf("bad key: %v %s", err, s)
	}
	if _, s, err := e.run(t, "l3", "connector", "remove", "alice"); err == nil || !strings.Contains(s, `"alice" is a client, not a connector`) {
		t.Fatalf("remove wrong kind: %v %s", err, s)
	}

	// Offline removal.
	_, s := e.mustRun(t, "l3", "client", "remove", "bob")
	if !strings.Contains(s, "client bob removed (the edge is not running)") {
		t.Fatalf("remove said %q", s)
	}
	if _, ok := e.list(t, "client")["bob"]; ok {
		t.Fatal("bob still listed after removal")
	}

	// A running edge: the printed configs carry traffic.
	srv := startEdge(t, e)
	ca := wgFromConnector(t, site)
	al := wgFromClient(t, alice)
	host4 := netip.MustParseAddr("198.18.30.7")
	aliceV4 := alice.Addresses[0].Addr()
	exchange := func(tag string) {
		t.Helper()
		al.send(t, udpTo(t, aliceV4, host4, tag))
		ca.expect(t, tag, aliceV4, host4, tag)
		ca.send(t, udpTo(t, host4, aliceV4, tag+" reply"))
		al.expect(t, tag+" reply", host4, aliceV4, tag+" reply")
	}
	exchange("hello")

	rows = e.list(t, "client")
	if a := rows["alice"]; !strings.HasSuffix(a.handshake, " ago") || a.rx == "0" || a.tx == "0" || a.drops != "0" {
		t.Fatalf("live alice listed as %+v", a)
	}
	metrics := scrape(t, metricsPort)
	if !strings.Contains(metrics, `onramp_edge_l3_rx_packets_total{kind="client"} 1`) ||
		!strings.Contains(metrics, `onramp_edge_l3_peers{kind="connector"} 1`) ||
		// l3.handshakes reaches the device.
		!strings.Contains(metrics, `onramp_edge_l3_handshake_limit{limit="per_second"} 1500`) ||
		!strings.Contains(metrics, `onramp_edge_l3_handshake_limit{limit="max_sources"} 4096`) {
		t.Fatalf("metrics:\n%s", grepLines(metrics, "onramp_edge_l3_"))
	}

	// A client added live works at once.
	daveConf, _ := e.mustRun(t, "l3", "client", "add", "dave")
	dave, err := l3config.ParseClient([]byte(daveConf))
	if err != nil {
		t.Fatal(err)
	}
	dv := wgFromClient(t, dave)
	daveV6, host6 := dave.Addresses[1].Addr(), netip.MustParseAddr("fd00:30::7")
	dv.send(t, udpTo(t, daveV6, host6, "dave"))
	ca.expect(t, "dave", daveV6, host6, "dave")

	// Online removal cuts alice at once; dave goes on.
	_, s = e.mustRun(t, "l3", "client", "remove", "alice")
	if !strings.Contains(s, "client alice removed and cut on the running edge") {
		t.Fatalf("remove said %q", s)
	}
	al.send(t, udpTo(t, aliceV4, host4, "after removal"))
	ca.expectNone(t, 500*time.Millisecond, aliceV4, host4, "after removal")
	dv.send(t, udpTo(t, daveV6, host6, "dave 2"))
	ca.expect(t, "dave 2", daveV6, host6, "dave 2")
	if _, ok := e.list(t, "client")["alice"]; ok {
		t.Fatal("alice still listed after removal")
	}
	if m := scrape(t, metricsPort); strings.Contains(m, `peer="alice"`) {
		t.Fatal("removed alice still on /metrics")
	}
	srv.stop(t)
	if !strings.Contains(srv.log.String(), "l3 hub listening") || !strings.Contains(srv.log.String(), "clients=1 connectors=1") {
		t.Fatalf("serve log:\n%s", srv.log.String())
	}
	// The store kept what the running edge did.
	if rows := e.list(t, "client"); len(rows) != 1 || rows["dave"].name != "dave" {
		t.Fatalf("after restart: %+v", rows)
	}
}

// wgQuickAccepts checks that Debian's wg-quick parses conf: `wg-quick
// strip` reads the file as `wg-quick up` does and prints what it would give
// to wg. It needs root (wg-quick re-runs itself with sudo otherwise) and
// wireguard-tools; CI has both.
func wgQuickAccepts(t *testing.T, conf []byte) {
	t.Helper()
	_, err := exec.LookPath("wg-quick")
	switch {
	case os.Getenv("CI") == "true" && (err != nil || os.Geteuid() != 0):
		t.Fatalf("CI: wg-quick needs root and wireguard-tools (make deps): %v", err)
	case err != nil:
		t.Logf("not checked with wg-quick: %v", err)
		return
	case os.Geteuid() != 0:
		t.Log("not checked with wg-quick: not root")
		return
	}
	path := filepath.Join(t.TempDir(), "onr-test.conf") // the name is the interface name
	if err := os.WriteFile(path, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("wg-quick", "strip", path).CombinedOutput()
	if err != nil {
		t.Fatalf("wg-quick strip: %v\n%s\nconfig:\n%s", err, out, conf)
	}
	for _, want := range []string{"PrivateKey = ", "PublicKey = ", "AllowedIPs = ", "Endpoint = "} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("wg-quick strip output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "Address") || strings.Contains(string(out), "MTU") {
		t.Fatalf("wg-quick did not take Address or MTU as its own:\n%s", out)
	}
}

func joinAddrs(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.Addr().String()
	}
	return strings.Join(s, ",")
}

// checkQR checks that out holds the half-block drawing of the QR code of
// conf (less its comments): every module of the code, read back from the
// characters.
func checkQR(t *testing.T, out string, conf []byte) {
	t.Helper()
	text := l3config.QRText(conf)
	if got, err := l3config.ParseClient([]byte(text)); err != nil || got.PrivateKey.IsZero() || strings.Contains(text, "#") {
		t.Fatalf("QR text: %v\n%s", err, text)
	}
	q, err := qrcode.New(text, qrcode.Low)
	if err != nil {
		t.Fatal(err)
	}
	bits := q.Bitmap()
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.ContainsAny(l, "█▀▄") || (l != "" && strings.Trim(l, " ") == "") {
			lines = append(lines, l)
		}
	}
	if len(lines) != (len(bits)+1)/2 {
		t.Fatalf("QR: %d lines for %d rows of modules:\n%s", len(lines), len(bits), out)
	}
	for y := range bits {
		row := []rune(lines[y/2])
		if len(row) != len(bits[y]) {
			t.Fatalf("QR line %d: %d characters for %d modules", y/2, len(row), len(bits[y]))
		}
		for x, dark := range bits[y] {
			// Light modules are drawn: the upper half of a character
			// is row y, the lower y+1.
			c := row[x]
			drawn := c == '█' || (y%2 == 0 && c == '▀') || (y%2 == 1 && c == '▄')
			if drawn == dark {
				t.Fatalf("QR module (%d,%d) dark=%v drawn as %q", x, y, dark, c)
			}
		}
	}
}

// edgeProc is a running `edge serve`.
type edgeProc struct {
	cmd  *exec.Cmd
	log  *bytes.Buffer
	done chan struct{}
}

func startEdge(t *testing.T, e *edgeCLI) *edgeProc {
	t.Helper()
	p := &edgeProc{log: &bytes.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(e.bin, "--config", e.config, "serve")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.stop(t) })
	sock := filepath.Join(e.data, "admin.sock")
	deadline := time.Now().Add(10 * time.Second)
	for dialAdmin(sock) == nil {
		select {
		case <-p.done:
			t.Fatalf("edge serve exited:\n%s", p.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("edge serve: no admin socket after 10s:\n%s", p.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p
}

func (p *edgeProc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("edge serve did not stop on SIGINT:\n%s", p.log.String())
	}
}

func scrape(t *testing.T, port int) string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// wgDev is an in-process wireguard-go device with a channel TUN, set up
// from a printed config.
type wgDev struct {
	ct *tuntest.ChannelTUN
}

func newWGDev(t *testing.T, uapi string) *wgDev {
	t.Helper()
	ct := tuntest.NewChannelTUN()
	dev := device.NewDevice(ct.TUN(), conn.NewDefaultBind(), device.NewLogger(device.LogLevelError, "test: "))
	t.Cleanup(dev.Close)
	if err := dev.IpcSet(uapi); err != nil {
		t.Fatalf("IpcSet: %v\n%s", err, uapi)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	return &wgDev{ct: ct}
}

func uapiPeer(priv, peer l3config.Key, endpoint string, keepalive int, allowed []netip.Prefix) string {
	var b strings.Builder
	fmt.Fprintf(&b, "private_key=%s\nlisten_port=0\npublic_key=%s\nendpoint=%s\npersistent_keepalive_interval=%d\n",
		priv.Hex(), peer.Hex(), endpoint, keepalive)
	for _, p := range allowed {
		fmt.Fprintf(&b, "allowed_ip=%v\n", p)
	}
	return b.String()
}

// wgFromClient is what a WireGuard app does with the wg-quick config.
func wgFromClient(t *testing.T, c *l3config.Client) *wgDev {
	return newWGDev(t, uapiPeer(c.PrivateKey, c.EdgePublicKey, c.Endpoint, c.Keepalive, c.AllowedIPs))
}

// wgFromConnector is the WireGuard side of `connector l3 run` with l3.yml.
func wgFromConnector(t *testing.T, c *l3config.Connector) *wgDev {
	keep := int(time.Duration(c.Edge.Keepalive) / time.Second)
	return newWGDev(t, uapiPeer(c.PrivateKey, c.Edge.PublicKey, c.Edge.Endpoint, keep, c.Routes))
}

func (d *wgDev) send(t *testing.T, p []byte) {
	t.Helper()
	select {
	case d.ct.Outbound <- p:
	case <-time.After(5 * time.Second):
		t.Fatal("TUN not read")
	}
}

func isTagged(p []byte, src, dst netip.Addr, tag string) bool {
	k, err := packet.ParseFlowKey(p)
	return err == nil && k.SrcAddr() == src && k.DstAddr() == dst && bytes.HasSuffix(p, []byte(tag))
}

func (d *wgDev) expect(t *testing.T, what string, src, dst netip.Addr, tag string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case p := <-d.ct.Inbound:
			if isTagged(p, src, dst, tag) {
				return
			}
		case <-deadline:
			t.Fatalf("%s: nothing arrived", what)
		}
	}
}

func (d *wgDev) expectNone(t *testing.T, wait time.Duration, src, dst netip.Addr, tag string) {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case p := <-d.ct.Inbound:
			if isTagged(p, src, dst, tag) {
				t.Fatalf("%q arrived", tag)
			}
		case <-deadline:
			return
		}
	}
}

// udpTo returns a UDP packet from src to dst with payload tag.
func udpTo(t *testing.T, src, dst netip.Addr, tag string) []byte {
	t.Helper()
	var b []byte
	var err error
	n := 8 + len(tag)
	if src.Is4() {
		b, err = packet.AppendIPv4(nil, &packet.IPv4Header{TTL: 64, Protocol: packet.ProtoUDP, Src: src, Dst: dst}, n)
	} else {
		b, err = packet.AppendIPv6(nil, &packet.IPv6Header{NextHeader: packet.ProtoUDP, HopLimit: 64, Src: src, Dst: dst}, n)
	}
	if err != nil {
		t.Fatal(err)
	}
	start := len(b)
	if b, err = packet.AppendUDP(b, &packet.UDPHeader{SrcPort: 40000, DstPort: 7}, len(tag)); err != nil {
		t.Fatal(err)
	}
	b = append(b, tag...)
	if err := packet.PutUDPChecksum(b[start:], packet.PseudoHeaderSum(src, dst, packet.ProtoUDP, uint32(n))); err != nil {
		t.Fatal(err)
	}
	return b
}
