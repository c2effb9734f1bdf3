package testnet_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onramp-net/onramp/testnet"
)

// revokeWorld is the tunnel world with a second tenant: tunnel "other",
// routed by *.other.test, with its own connector and a user loop that must
// keep being served while tunnel "demo" (the default tunnel of the rig) is
// attacked, deleted, rotated and created again.
type revokeWorld struct {
	*tunnelWorld
	loop *testnet.Loop
}

func newRevokeWorld(t *testing.T) *revokeWorld {
	t.Helper()
	n := testnet.New(t, testnet.Tunnel())
	origins, err := n.Node("origin").ServeOrigins()
	if err != nil {
		t.Fatal(err)
	}
	yaml := strings.Replace(testnet.DefaultEdgeYAML("demo"), "routes:\n",
		"routes:\n  - {hostname: \"*.other.test\", tunnel: other}\n", 1)
	rig, err := testnet.StartTunnelRig(context.Background(), n, testnet.RigOptions{Dir: t.TempDir(), EdgeYAML: yaml})
	if err != nil {
		t.Fatal(err)
	}
	w := &revokeWorld{tunnelWorld: &tunnelWorld{t: t, n: n, rig: rig, origins: origins, user: n.Node("user"),
		edge4: n.Addr("edge", "user", false).String(), edge6: n.Addr("edge", "user", true).String()}}
	tokenFile, err := rig.AddTunnel(context.Background(), "other")
	if err != nil {
		t.Fatal(err)
	}
	other, err := rig.StartTunnelConnector(n.Node("conn"), tokenFile, "other", "quic", fmt.Sprintf(`ingress:
  - {hostname: "*.other.test", service: "http://198.18.30.2:%d"}
  - service: "http_status:404"
`, testnet.OriginHTTP), "--metrics", "127.0.0.1:9201")
	if err != nil {
		t.Fatal(err)
	}
	if err := other.WaitReady(20 * time.Second); err != nil {
		t.Fatalf("other: %v\n%s", err, other.Output())
	}
	http := w.addr(false, testnet.EdgeHTTPPort)
	w.loop = testnet.StartLoop("user of tunnel other", 50*time.Millisecond, func() error {
		code, body, err := w.user.HTTPGet(http, "app.other.test", "/loop")
		if err == nil && (code != 200 || !strings.Contains(body, "hello from origin")) {
			err = fmt.Errorf("status %d: %q", code, body)
		}
		return err
	})
	t.Cleanup(w.loop.Stop)
	return w
}

// finish stops the other tenant's loop, prints and checks it, and prints
// and checks the edge's memory.
func (w *revokeWorld) finish() {
	t := w.t
	t.Helper()
	w.loop.Stop()
	t.Log(w.loop.String())
	if ok, _ := w.loop.Counts(); ok < 10 || w.loop.Rate() < 0.99 {
		t.Errorf("the other tunnel's user was not kept served: %s", w.loop)
	}
	rss, peak, err := w.rig.Edge.MemStatus()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("edge memory: RSS %s, peak %s", testnet.MiB(rss), testnet.MiB(peak))
	if peak > 200<<20 {
		t.Errorf("edge peak RSS %s, want under 200 MiB", testnet.MiB(peak))
	}
}

// demoServed checks that a user of tunnel demo is served through its route
// (HTTP by Host) and its TCP binding (echo).
func (w *revokeWorld) demoServed(when string) {
	t := w.t
	t.Helper()
	code, body, err := w.user.HTTPGet(w.addr(false, testnet.EdgeHTTPPort), "web.demo.test", "/served")
	if err != nil || code != 200 || !strings.Contains(body, "hello from origin: GET /served") {
		t.Errorf("%s: route: %d %q %v; want the origin's page", when, code, body, err)
	}
	if got, err := w.echo("ping"); err != nil || got != "ping" {
		t.Errorf("%s: binding: echo %q, %v", when, got, err)
	}
}

// demoOffline checks that a user of tunnel demo finds it offline: 502
// "tunnel offline" through the route (not 404: the route stays), and the
// TCP binding closed without an answer.
func (w *revokeWorld) demoOffline(when string) {
	t := w.t
	t.Helper()
	code, body, err := w.user.HTTPGet(w.addr(false, testnet.EdgeHTTPPort), "web.demo.test", "/offline")
	if err != nil || code != 502 || !strings.Contains(body, "tunnel offline") {
		t.Errorf("%s: route: %d %q %v; want 502 tunnel offline", when, code, body, err)
	}
	if got, err := w.echo("ping"); err == nil || got != "" {
		t.Errorf("%s: binding answered %q, %v; want the connection closed", when, got, err)
	}
}

// echo sends msg through the demo TCP binding and returns what came back.
func (w *revokeWorld) echo(msg string) (string, error) {
	c, err := w.user.Dial("tcp", w.addr(false, testnet.EdgeEchoPort))
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	got := make([]byte, len(msg))
	n, err := io.ReadFull(c, got)
	return string(got[:n]), err
}

// tokenFile writes a token printed by the edge to a file of the rig.
func (w *revokeWorld) tokenFile(name, out string) string {
	path := filepath.Join(w.rig.Dir, name+".token")
	if err := os.WriteFile(path, []byte(strings.TrimSpace(out)+"\n"), 0o600); err != nil {
		w.t.Fatal(err)
	}
	return path
}

// waitExit waits for a connector process to exit with an error whose
// output names want.
func waitExit(t *testing.T, c *testnet.Connector, what, want string) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(15 * time.Second):
		t.Fatalf("%s: the connector still runs:\n%s", what, c.Output())
	}
	if err := c.Wait(); err == nil {
		t.Errorf("%s: the connector exited 0", what)
	}
	if out := c.Output(); !strings.Contains(out, want) {
		t.Errorf("%s: the connector said:\n%s\nwant %q", what, out, want)
	}
}

// TestDeletedTunnelConnectionRace plays hole 3 as its attacker: the
// connector of tunnel demo, speaking HTTP/2, authenticates, then holds back
// its answer to the edge's datagram stream, the last step before the edge
// registers the connection; meanwhile the tunnel is deleted. Before the fix
// the edge then registered the connection and kept it, and the binding,
// still bound to the old tunnel ID, sent users to it. Now the connection is
// refused at registration with "tunnel deleted", and users find the tunnel
// offline; the other tunnel's user is served throughout.
func TestDeletedTunnelConnectionRace(t *testing.T) {
	w := newRevokeWorld(t)
	ctx := context.Background()
	edgeTunnels := net.JoinHostPort(w.n.Addr("edge", "conn", false).String(), fmt.Sprint(testnet.EdgeTunnelPort))
	atk, err := w.n.Node("conn").DialSlowConnector(edgeTunnels, w.rig.Token)
	if err != nil {
		t.Fatal(err)
	}
	defer atk.Close()
	if err := atk.WaitHeld(8 * time.Second); err != nil {
		t.Fatal(err)
	}
	held := time.Now()
	t.Logf("the demo connection authenticated (verdict %q) and holds back its registration", atk.Verdict())
	if _, err := w.rig.EdgeCLI(ctx, "tunnel", "delete", "demo"); err != nil {
		t.Fatal(err)
	}
	atk.Release()
	t.Logf("tunnel demo deleted, then the connection released, %v after its authentication", time.Since(held).Round(time.Millisecond))

	select {
	case <-atk.Done():
	case <-time.After(10 * time.Second):
		_, err := w.echo("to the deleted tunnel")
		t.Fatalf("the deleted tunnel's connection survived its registration; a user of its binding: %v; "+
			"user streams the edge sent to the connection: %d", err, atk.Streams())
	}
	t.Logf("the edge closed the connection: reason %q (%v)", atk.CloseReason(), atk.Err())
	if r := atk.CloseReason(); r != "tunnel deleted" {
		t.Errorf("close reason %q, want \"tunnel deleted\"", r)
	}
	w.demoOffline("after the delete")
	if n := atk.Streams(); n != 0 {
		t.Errorf("the edge sent %d user streams to the deleted tunnel's connection", n)
	}
	metrics, err := w.rig.EdgeMetrics()
	if err != nil {
		t.Fatal(err)
	}
	if v := testnet.MetricValue(metrics, "onramp_edge_connector_revocations_total", `reason="tunnel_deleted"`, `stage="registration"`); v != 1 {
		t.Errorf("onramp_edge_connector_revocations_total{tunnel_deleted,registration} = %v, want 1", v)
	}
	if v := testnet.MetricValue(metrics, "onramp_edge_connector_connections", `protocol="http2"`); v != 0 {
		t.Errorf("the edge counts %v live HTTP/2 connector connections, want 0", v)
	}
	w.finish()
}

// TestTunnelRotate: `edge tunnel rotate demo` gives demo a new token. The
// connectors of the old token (QUIC and HTTP/2) stop at once, saying the
// token was rotated; the old token is refused; a connector with the new
// token serves the same route and binding. Then demo is deleted and
// created again under its name (a new tunnel ID): its route and binding
// serve it at once, without restarting the edge. The other tunnel's user
// is served throughout.
func TestTunnelRotate(t *testing.T) {
	w := newRevokeWorld(t)
	ctx := context.Background()
	conn := w.n.Node("conn")
	oldQUIC := w.connector("demo-quic", "quic", "")
	oldH2 := w.connector("demo-http2", "http2", "", "--metrics", "127.0.0.1:9202")
	w.demoServed("before the rotation")

	out, err := w.rig.EdgeCLI(ctx, "tunnel", "rotate", "demo")
	if err != nil {
		t.Fatal(err)
	}
	rotated := time.Now()
	newToken := w.tokenFile("demo-rotated", out)
	if strings.TrimSpace(out) == w.rig.Token {
		t.Fatal("rotate printed the old token")
	}
	for _, c := range []*testnet.Connector{oldQUIC, oldH2} {
		waitExit(t, c, "connector of the rotated token", "token rotated")
	}
	t.Logf("both connectors of the old token stopped %v after the rotation", time.Since(rotated).Round(time.Millisecond))
	w.demoOffline("after the rotation")

	refused, err := w.rig.StartConnector(conn, "demo-old-token", "quic", testnet.DefaultIngressYAML("198.18.30.2"), "--metrics", "127.0.0.1:9203")
	if err != nil {
		t.Fatal(err)
	}
	waitExit(t, refused, "connector started with the old token", "unknown tunnel or bad secret")

	fresh, err := w.rig.StartTunnelConnector(conn, newToken, "demo-new-token", "http2", testnet.DefaultIngressYAML("198.18.30.2"), "--metrics", "127.0.0.1:9204")
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.WaitReady(20 * time.Second); err != nil {
		t.Fatalf("connector with the new token: %v\n%s", err, fresh.Output())
	}
	w.demoServed("with the new token")

	if _, err := w.rig.EdgeCLI(ctx, "tunnel", "delete", "demo"); err != nil {
		t.Fatal(err)
	}
	waitExit(t, fresh, "connector of the deleted tunnel", "tunnel deleted")
	w.demoOffline("after the delete")
	out, err = w.rig.EdgeCLI(ctx, "tunnel", "create", "demo")
	if err != nil {
		t.Fatal(err)
	}
	again, err := w.rig.StartTunnelConnector(conn, w.tokenFile("demo-again", out), "demo-again", "quic", testnet.DefaultIngressYAML("198.18.30.2"), "--metrics", "127.0.0.1:9205")
	if err != nil {
		t.Fatal(err)
	}
	if err := again.WaitReady(20 * time.Second); err != nil {
		t.Fatalf("connector of the tunnel created again: %v\n%s", err, again.Output())
	}
	w.demoServed("created again under its name")

	metrics, err := w.rig.EdgeMetrics()
	if err != nil {
		t.Fatal(err)
	}
	// Connectors keep 4 connections each: 2 connectors of the rotated
	// token, 1 of the deleted tunnel.
	for _, c := range []struct {
		reason string
		want   float64
	}{{"token_rotated", 8}, {"tunnel_deleted", 4}} {
		if v := testnet.MetricValue(metrics, "onramp_edge_connector_revocations_total", `reason="`+c.reason+`"`, `stage="live"`); v != c.want {
			t.Errorf("onramp_edge_connector_revocations_total{%s,live} = %v, want %v", c.reason, v, c.want)
		}
	}
	w.finish()
}
