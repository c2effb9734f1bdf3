package testnet_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l4proxy/tunnel"
	"github.com/onramp-net/onramp/testnet"
)

// tunnelWorld is the L4 tunnel running for real: the edge and connector
// binaries in a Tunnel topology with the origins behind the connector.
type tunnelWorld struct {
	t       *testing.T
	n       *testnet.Net
	rig     *testnet.TunnelRig
	origins *testnet.Origins
	user    *testnet.Node
	edge4   string // the edge's address as users see it
	edge6   string
}

func newTunnelWorld(t *testing.T) *tunnelWorld {
	t.Helper()
	n := testnet.New(t, testnet.Tunnel())
	origins, err := n.Node("origin").ServeOrigins()
	if err != nil {
		t.Fatal(err)
	}
	rig, err := testnet.StartTunnelRig(context.Background(), n, testnet.RigOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return &tunnelWorld{t: t, n: n, rig: rig, origins: origins, user: n.Node("user"),
		edge4: n.Addr("edge", "user", false).String(), edge6: n.Addr("edge", "user", true).String()}
}

// connector starts a connector in the conn node and waits until it is ready.
func (w *tunnelWorld) connector(name, proto, ingress string, extra ...string) *testnet.Connector {
	w.t.Helper()
	if ingress == "" {
		ingress = testnet.DefaultIngressYAML("198.18.30.2")
	}
	c, err := w.rig.StartConnector(w.n.Node("conn"), name, proto, ingress, extra...)
	if err != nil {
		w.t.Fatal(err)
	}
	if err := c.WaitReady(20 * time.Second); err != nil {
		w.t.Fatalf("%s: %v\n%s", name, err, c.Output())
	}
	return c
}

func (w *tunnelWorld) addr(v6 bool, port int) string {
	if v6 {
		return net.JoinHostPort(w.edge6, fmt.Sprint(port))
	}
	return net.JoinHostPort(w.edge4, fmt.Sprint(port))
}

// TestTunnelTransports runs the user-facing checks through each transport:
// HTTP by Host (Go client and curl), TLS by SNI with curl trusting only the
// origin's certificate (the edge passes TLS through), a 1 GiB upload with its
// SHA-256 compared, a download, half-close, UDP, and IPv6 on every leg.
func TestTunnelTransports(t *testing.T) {
	for _, proto := range []string{"quic", "http2"} {
		t.Run(proto, func(t *testing.T) {
			w := newTunnelWorld(t)
			w.connector("conn", proto, "")
			http := w.addr(false, testnet.EdgeHTTPPort)

			code, body, err := w.user.HTTPGet(http, "web.demo.test", "/hello")
			if err != nil || code != 200 || !strings.Contains(body, "hello from origin: GET /hello host=web.demo.test") {
				t.Fatalf("HTTP by Host: %d %q %v", code, body, err)
			}
			if !strings.Contains(body, "from=198.18.30.1:") {
				t.Errorf("origin saw %q; want the connector host 198.18.30.1 as the source", body)
			}
			code, _, err = w.user.HTTPGet(http, "web.demo.test", "/api/v1")
			if err != nil || code != 418 {
				t.Errorf("path rule /api: status %d, %v; want 418", code, err)
			}
			code, body, err = w.user.HTTPGet(http, "nobody.example.test", "/")
			if err != nil || code != 404 {
				t.Errorf("unrouted Host: status %d %q %v; want 404 from the edge", code, body, err)
			}

			// curl as the user: plain HTTP by Host, and HTTPS by SNI that
			// only verifies if the TLS session is the origin's own.
			ca := filepath.Join(t.TempDir(), "origin-ca.pem")
			if err := os.WriteFile(ca, w.origins.CAPEM, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := w.user.Run(context.Background(), "curl", "-sS", "--max-time", "15",
				"--resolve", fmt.Sprintf("web.demo.test:%d:%s", testnet.EdgeHTTPPort, w.edge4),
				fmt.Sprintf("http://web.demo.test:%d/curl", testnet.EdgeHTTPPort))
			if err != nil || !strings.Contains(string(out), "GET /curl") {
				t.Errorf("curl by Host: %v: %s", err, out)
			}
			out, err = w.user.Run(context.Background(), "curl", "-sS", "--max-time", "15", "--cacert", ca,
				"--resolve", fmt.Sprintf("secure.demo.test:%d:[%s]", testnet.EdgeTLSPort, w.edge6),
				fmt.Sprintf("https://secure.demo.test:%d/sni", testnet.EdgeTLSPort))
			if err != nil || !strings.Contains(string(out), "hello from origin over TLS: GET /sni") {
				t.Errorf("curl by SNI over IPv6 (TLS passthrough): %v: %s", err, out)
			}

			// 1 GiB up, SHA-256 compared by the origin after a half-close.
			const gib = 1 << 30
			d, err := w.user.Upload(w.addr(false, testnet.EdgeSumPort), gib)
			if err != nil {
				t.Fatalf("1 GiB upload: %v", err)
			}
			t.Logf("%s: 1 GiB upload in %v (%s)", proto, d.Round(time.Millisecond), testnet.MBps(gib, d))
			d, err = w.user.Download(w.addr(true, testnet.EdgeSourcePort), 256<<20)
			if err != nil {
				t.Fatalf("256 MiB download over IPv6: %v", err)
			}
			t.Logf("%s: 256 MiB download in %v (%s)", proto, d.Round(time.Millisecond), testnet.MBps(256<<20, d))
			for _, v6 := range []bool{false, true} {
				if err := w.user.UDPEcho(w.addr(v6, testnet.EdgeEchoPort), 20); err != nil {
					t.Errorf("UDP (IPv6 %v): %v", v6, err)
				}
			}
		})
	}
}

// TestTunnelIPv6Origin sends everything to the origin's IPv6 address: user,
// tunnel and origin legs are all IPv6.
func TestTunnelIPv6Origin(t *testing.T) {
	w := newTunnelWorld(t)
	w.connector("conn", "quic", testnet.DefaultIngressYAML("fd00:30::2"))
	code, body, err := w.user.HTTPGet(w.addr(true, testnet.EdgeHTTPPort), "web.demo.test", "/v6")
	if err != nil || code != 200 || !strings.Contains(body, "from=[fd00:30::1]:") {
		t.Fatalf("HTTP to an IPv6 origin: %d %q %v", code, body, err)
	}
	if _, err := w.user.Upload(w.addr(true, testnet.EdgeSumPort), 64<<20); err != nil {
		t.Fatal(err)
	}
	if err := w.user.UDPEcho(w.addr(true, testnet.EdgeEchoPort), 10); err != nil {
		t.Fatal(err)
	}
}

// TestTunnelConcurrentConnections holds 500 user connections open at once
// through one connector, each echoing its own message.
func TestTunnelConcurrentConnections(t *testing.T) {
	w := newTunnelWorld(t)
	w.connector("conn", "quic", "")
	const n = 500
	conns := make([]net.Conn, n)
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	for i := range conns {
		c, err := w.user.Dial("tcp", w.addr(i%2 == 1, testnet.EdgeEchoPort))
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns[i] = c
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := fmt.Sprintf("message %d of %d", i, n)
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			if _, err := io.WriteString(c, msg); err != nil {
				errs <- err
				return
			}
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
				errs <- fmt.Errorf("connection %d: got %q, %v", i, got, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestTunnelFallsBackToHTTP2 blocks UDP between the connector and the edge:
// --protocol auto must fall back to HTTP/2 and traffic must flow.
func TestTunnelFallsBackToHTTP2(t *testing.T) {
	w := newTunnelWorld(t)
	if err := w.n.Link("edge", "conn").DropUDP(); err != nil {
		if testnet.CI() {
			t.Fatal(err)
		}
		t.Skipf("cannot block UDP here: %v", err)
	}
	c := w.connector("conn", "auto", "")
	list, err := w.rig.EdgeCLI(context.Background(), "tunnel", "list")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(list, "http2") || strings.Contains(list, "quic") {
		t.Errorf("edge tunnel list with UDP blocked:\n%s\nwant only http2 connections", list)
	}
	if _, err := w.user.Upload(w.addr(false, testnet.EdgeSumPort), 32<<20); err != nil {
		t.Fatalf("upload over the fallback: %v\nconnector:\n%s", err, c.Output())
	}
	if err := w.user.UDPEcho(w.addr(false, testnet.EdgeEchoPort), 10); err != nil {
		t.Errorf("UDP over the HTTP/2 fallback: %v", err)
	}
}

// TestTunnelTokenRefused starts connectors with a wrong secret and with the
// token of a deleted tunnel: each exits with the same refusal (the edge does
// not tell a stranger whether a tunnel exists), while a good connector's
// transfer is not disturbed. Deleting the good tunnel then drops its
// connector, which says why.
func TestTunnelTokenRefused(t *testing.T) {
	ctx := context.Background()
	w := newTunnelWorld(t)
	good := w.connector("good", "quic", "")

	transfer := make(chan error, 1)
	go func() {
		_, err := w.user.Download(w.addr(false, testnet.EdgeSourcePort), 512<<20)
		transfer <- err
	}()

	tok, err := tunnel.ParseToken(w.rig.Token)
	if err != nil {
		t.Fatal(err)
	}
	tok.Secret[0] ^= 0xff
	badSecret := tunnel.EncodeToken(tok)

	if _, err := w.rig.EdgeCLI(ctx, "tunnel", "create", "gone"); err != nil {
		t.Fatal(err)
	}
	goneTok, err := w.rig.EdgeCLI(ctx, "tunnel", "create", "gone2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.rig.EdgeCLI(ctx, "tunnel", "delete", "gone2"); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct{ name, token, want string }{
		{"wrong secret", badSecret, "unknown tunnel or bad secret"},
		{"deleted tunnel", strings.TrimSpace(goneTok), "unknown tunnel or bad secret"},
	} {
		p, err := w.n.Node("conn").Start(w.rig.ConnectorBin, "tunnel", "run", "--token", tc.token,
			"--config", filepath.Join(w.rig.Dir, "good-ingress.yml"), "--protocol", "quic")
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-p.Done():
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: connector still running; want it to exit with the refusal", tc.name)
		}
		if p.Wait() == nil {
			t.Errorf("%s: connector exited 0", tc.name)
		}
		if out := p.Output(); !strings.Contains(out, "refused") || !strings.Contains(out, tc.want) {
			t.Errorf("%s: connector said:\n%s\nwant a refusal naming %q", tc.name, out, tc.want)
		}
	}
	if err := <-transfer; err != nil {
		t.Errorf("a good connector's transfer was disturbed: %v", err)
	}
	if _, err := w.user.Upload(w.addr(false, testnet.EdgeSumPort), 1<<20); err != nil {
		t.Errorf("good connector after the refusals: %v", err)
	}

	// Deleting the live tunnel drops its connector, which exits with the reason.
	if _, err := w.rig.EdgeCLI(ctx, "tunnel", "delete", w.rig.TunnelName); err != nil {
		t.Fatal(err)
	}
	select {
	case <-good.Done():
	case <-time.After(30 * time.Second):
		t.Fatalf("connector of a deleted tunnel still runs:\n%s", good.Output())
	}
	if good.Wait() == nil {
		t.Errorf("connector of a deleted tunnel exited 0")
	}
	if out := good.Output(); !strings.Contains(out, "refused") || !strings.Contains(out, "tunnel deleted") {
		t.Errorf("connector of a deleted tunnel said:\n%s\nwant the refusal naming \"tunnel deleted\"", out)
	}
}

// TestTunnelReload changes the ingress file and sends SIGHUP: new streams
// follow the new rules while a stream opened before keeps working; a broken
// file is refused and the rules stay.
func TestTunnelReload(t *testing.T) {
	w := newTunnelWorld(t)
	c := w.connector("conn", "quic", "")
	live, err := w.user.Dial("tcp", w.addr(false, testnet.EdgeEchoPort))
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	echo := func(msg string) error {
		_ = live.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(live, msg); err != nil {
			return err
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(live, got); err != nil || string(got) != msg {
			return fmt.Errorf("echo %q: got %q, %v", msg, got, err)
		}
		return nil
	}
	if err := echo("before reload"); err != nil {
		t.Fatal(err)
	}
	http := w.addr(false, testnet.EdgeHTTPPort)
	next := strings.Replace(testnet.DefaultIngressYAML("198.18.30.2"), "http_status:418", "http_status:451", 1)
	if err := os.WriteFile(c.Ingress, []byte(next), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _, err := w.user.HTTPGet(http, "web.demo.test", "/api/x")
		if err == nil && code == 451 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after SIGHUP the /api rule answers %d, %v; want 451", code, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := echo("after reload"); err != nil {
		t.Fatalf("a stream opened before the reload broke: %v", err)
	}
	if err := os.WriteFile(c.Ingress, []byte("ingress: [{service: ftp://x}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if code, _, err := w.user.HTTPGet(http, "web.demo.test", "/api/x"); err != nil || code != 451 {
		t.Errorf("after a bad reload: %d, %v; want the old rules (451)", code, err)
	}
	if out := c.Output(); !strings.Contains(out, "reload refused") {
		t.Errorf("connector did not say it refused the bad file:\n%s", out)
	}
}

// TestTunnelDrain sends SIGTERM to a connector in the middle of a transfer:
// the transfer finishes, then the connector exits 0.
func TestTunnelDrain(t *testing.T) {
	w := newTunnelWorld(t)
	// 100 Mbit/s between edge and connector: 48 MiB takes about 4 s.
	if err := w.n.Link("edge", "conn").SetRate(context.Background(), 100_000_000); err != nil {
		t.Fatal(err)
	}
	c := w.connector("conn", "quic", "", "--grace-period", "60s")
	const size = 48 << 20
	transfer := make(chan error, 1)
	go func() {
		_, err := w.user.Download(w.addr(false, testnet.EdgeSourcePort), size)
		transfer <- err
	}()
	time.Sleep(time.Second)
	if err := c.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-transfer:
		if err != nil {
			t.Fatalf("the transfer live at SIGTERM failed: %v\nconnector:\n%s", err, c.Output())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("transfer did not finish")
	}
	select {
	case <-c.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("connector still runs after its last stream finished")
	}
	if err := c.Wait(); err != nil {
		t.Errorf("connector exit after drain: %v\n%s", err, c.Output())
	}
	// Now the tunnel has no connector: the edge says so.
	code, _, err := w.user.HTTPGet(w.addr(false, testnet.EdgeHTTPPort), "web.demo.test", "/")
	if err != nil || code != 502 {
		t.Errorf("with no connector the edge answers %d, %v; want 502", code, err)
	}
}

// TestTunnelMetrics checks the edge's and the connector's metrics after
// traffic.
func TestTunnelMetrics(t *testing.T) {
	w := newTunnelWorld(t)
	c := w.connector("conn", "quic", "")
	if _, err := w.user.Upload(w.addr(false, testnet.EdgeSumPort), 8<<20); err != nil {
		t.Fatal(err)
	}
	get := func(node *testnet.Node, url string) string {
		resp, err := node.HTTPClient(5 * time.Second).Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	edgeMetrics := get(w.n.Node("edge"), "http://"+net.JoinHostPort(w.n.Addr("edge", "conn", false).String(), "9100")+"/metrics")
	connMetrics := get(w.n.Node("conn"), "http://"+c.Metrics+"/metrics")
	for _, want := range []string{"onramp_edge_", "go_goroutines"} {
		if !strings.Contains(edgeMetrics, want) {
			t.Errorf("edge /metrics lacks %s", want)
		}
	}
	if !strings.Contains(connMetrics, "onramp_connector_") {
		t.Errorf("connector /metrics lacks onramp_connector_")
	}
}

// TestTunnelBackpressure has 100 users upload as fast as they can to an
// origin that reads 320 KB/s each: the edge's and connector's memory must
// stay bounded and flat (flow control pushes back to the users) instead of
// buffering what the origin cannot take.
func TestTunnelBackpressure(t *testing.T) {
	for _, proto := range []string{"quic", "http2"} {
		t.Run(proto, func(t *testing.T) {
			w := newTunnelWorld(t)
			c := w.connector("conn", proto, "")
			const users = 100
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var sent [users]int64
			for i := range users {
				conn, err := w.user.Dial("tcp", w.addr(false, testnet.EdgeSlowPort))
				if err != nil {
					t.Fatal(err)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer conn.Close()
					buf := make([]byte, 64*1024)
					for {
						select {
						case <-stop:
							return
						default:
						}
						_ = conn.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
						n, err := conn.Write(buf)
						sent[i] += int64(n)
						if err != nil && !os.IsTimeout(err) {
							return
						}
					}
				}()
			}
			rss := func() (edge, conn int64) {
				e, err := w.rig.Edge.RSS()
				if err != nil {
					t.Fatal(err)
				}
				k, err := c.RSS()
				if err != nil {
					t.Fatal(err)
				}
				return e, k
			}
			time.Sleep(3 * time.Second)
			edge1, conn1 := rss()
			time.Sleep(3 * time.Second)
			edge2, conn2 := rss()
			close(stop)
			wg.Wait()
			var total int64
			for _, n := range sent {
				total += n
			}
			t.Logf("%s: users sent %d MB in 6 s; edge RSS %d -> %d MB, connector RSS %d -> %d MB",
				proto, total>>20, edge1>>20, edge2>>20, conn1>>20, conn2>>20)
			// 100 users at 320 KB/s drain about 190 MB in 6 s; what the
			// users got to send beyond that sits in windows and buffers.
			const limit = 400 << 20
			for _, m := range []struct {
				name   string
				v1, v2 int64
			}{{"edge", edge1, edge2}, {"connector", conn1, conn2}} {
				if m.v2 > limit {
					t.Errorf("%s RSS %d MB exceeds %d MB", m.name, m.v2>>20, limit>>20)
				}
				if m.v2 > m.v1+m.v1/2+(32<<20) {
					t.Errorf("%s RSS grows under sustained overload: %d MB -> %d MB", m.name, m.v1>>20, m.v2>>20)
				}
			}
			if total > 190<<20+users*(32<<20) {
				t.Errorf("users sent %d MB: more than the origin read plus bounded windows", total>>20)
			}
		})
	}
}
