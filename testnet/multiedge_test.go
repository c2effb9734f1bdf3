package testnet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onramp-net/onramp/testnet"
)

// TestMultiEdgeRegistry runs two real edges on a real etcd cluster of
// three members (Debian's etcd-server) with a connector whose token names
// both edges:
//   - a tunnel created on edge A is accepted by edge B, and users reach
//     the origin through both;
//   - 1,000 registry changes (tunnels created on A, then deleted) reach
//     edge B; the latency from each request to B applying it is printed
//     with its 99th percentile, which must be under 1 s;
//   - with one etcd member (the leader) killed nothing changes for users
//     and changes still work; with quorum lost, the edges keep serving
//     what they know (users' connections, a new connector replica
//     authenticates) and refuse changes with an error naming the cause;
//   - once etcd is back, a rotation on edge B drops the old token's
//     connections on edge A, and a deletion on edge B cuts a tunnel's
//     connections on edge A, each within a second.
func TestMultiEdgeRegistry(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	n, etcd, w, dir := multiEdgeWorld(t, ctx, false, true)
	user := n.Node("user")
	echo := func(edge int) error {
		addr := net.JoinHostPort(w.Edges[edge].Public, fmt.Sprint(testnet.EdgeEchoPort))
		c, err := user.Dial("tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		msg := []byte("through edge " + w.Edges[edge].Node.Name)
		if _, err := c.Write(msg); err != nil {
			return err
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil {
			return fmt.Errorf("echo via %s: %w", addr, err)
		}
		if string(got) != string(msg) {
			return fmt.Errorf("echo via %s: %q", addr, got)
		}
		return nil
	}

	// A tunnel created on edge A; edge B knows it within a second.
	start := time.Now()
	tok, err := w.CLI(ctx, 0, "tunnel", "create", "web")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := testnet.WaitLog(w.Edges[1].Proc, time.Second, "tunnel created", "name=web"); err != nil {
		t.Fatalf("edge B: %v\n%s", err, w.Edges[1].Proc.Output())
	}
	t.Logf("tunnel created on edge A, known to edge B after %v", time.Since(start).Round(time.Millisecond))
	tokenFile := filepath.Join(dir, "web.token")
	if err := os.WriteFile(tokenFile, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	ingress := testnet.DefaultIngressYAML(n.Addr("origin", "lan", false).String())
	conn := startConnector(t, w, n.Node("conn"), tokenFile, "replica1", ingress)
	// The token names both edges: the connector's 4 connections are
	// spread over them, and users reach the origin through either.
	eventually(t, 15*time.Second, "connections to both edges", func() error {
		for i := range w.Edges {
			var ts []struct {
				Name        string
				Connections []json.RawMessage
			}
			if err := w.Admin(ctx, i, http.MethodGet, "/v1/tunnels", &ts); err != nil {
				return err
			}
			if len(ts) != 1 || len(ts[0].Connections) == 0 {
				return fmt.Errorf("edge %d: %+v", i, ts)
			}
		}
		return nil
	})
	for i := range w.Edges {
		if err := echo(i); err != nil {
			t.Fatal(err)
		}
	}
	// /ready says how many connections are up and to where.
	resp, err := conn.Node.HTTPClient(2 * time.Second).Get("http://" + conn.Metrics + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"ready: 4 of 4 connections up", w.Edges[0].Public + ":7844 quic x2", w.Edges[1].Public + ":7844 quic x2"} {
		if !strings.Contains(string(body), want) {
			t.Fatalf("connector /ready: %q, want %q in it", body, want)
		}
	}
	t.Logf("connector /ready: %s", strings.TrimSpace(string(body)))

	// 1,000 changes made on edge A reach edge B.
	propagation(ctx, t, w)

	// One etcd member lost, the leader: users see nothing, changes work.
	leader, err := etcd.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := etcd.Kill(leader); err != nil {
		t.Fatal(err)
	}
	t.Logf("etcd member %d (the leader) killed", leader+1)
	for i := range w.Edges {
		if err := echo(i); err != nil {
			t.Fatalf("with one etcd member down: %v", err)
		}
	}
	start = time.Now()
	eventually(t, 10*time.Second, "a change with one etcd member down", func() error {
		_, err := w.CLI(ctx, 1, "tunnel", "create", "after-one-down")
		return err
	})
	t.Logf("with one etcd member down, a change succeeded after %v", time.Since(start).Round(time.Millisecond))

	// Quorum lost: the edges serve what they know and refuse changes.
	second := (leader + 1) % 3
	if err := etcd.Kill(second); err != nil {
		t.Fatal(err)
	}
	t.Logf("etcd member %d killed too: no quorum", second+1)
	for i := range w.Edges {
		if err := echo(i); err != nil {
			t.Fatalf("without etcd quorum: %v", err)
		}
	}
	start = time.Now()
	_, err = w.CLI(ctx, 0, "tunnel", "create", "no-quorum")
	if err == nil || !strings.Contains(err.Error(), "registry unavailable") || !strings.Contains(err.Error(), "majority of the etcd members") {
		t.Fatalf("a change without quorum: %v, want a refusal naming the registry and its quorum", err)
	}
	t.Logf("without quorum, a change was refused after %v: %v", time.Since(start).Round(time.Millisecond), err)
	// A new connector replica authenticates against what the edges know.
	conn2 := startConnector(t, w, n.Node("conn2"), tokenFile, "replica2", ingress)
	for i := range w.Edges {
		if err := echo(i); err != nil {
			t.Fatalf("without etcd quorum, after a second replica joined: %v", err)
		}
	}

	// etcd back; a deletion on edge B cuts the tunnel on edge A at once.
	for _, i := range []int{leader, second} {
		if err := etcd.Start(i); err != nil {
			t.Fatal(err)
		}
	}
	if err := etcd.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "a change once etcd is back", func() error {
		_, err := w.CLI(ctx, 0, "tunnel", "create", "after-quorum")
		return err
	})
	// A rotation on edge B drops the old token's connections on edge A.
	start = time.Now()
	if err := w.Admin(ctx, 1, http.MethodPost, "/v1/tunnels/web/rotate", nil); err != nil {
		t.Fatal(err)
	}
	line, err := testnet.WaitLog(w.Edges[0].Proc, time.Second, "tunnel token rotated", "name=web")
	if err != nil {
		t.Fatalf("edge A after the rotation on edge B: %v\n%s", err, w.Edges[0].Proc.Output())
	}
	t.Logf("token rotated on edge B, the old token's connections on edge A dropped after %v: %s", time.Since(start).Round(time.Millisecond), line)
	// Edge A drops what is left of the old token's connections; the
	// connectors, told by edge B, may have closed some or all of them
	// first (the log then says fewer). Either way none is left on A
	// within the second.
	if err := noConnections(ctx, w, 0, "web", start.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*testnet.Connector{conn, conn2} {
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatalf("connector %s still runs after its token was rotated", c.Node.Name)
		}
		if !strings.Contains(c.Output(), "rotated") {
			t.Errorf("connector %s does not say the token was rotated:\n%s", c.Node.Name, c.Output())
		}
	}

	// A deletion on edge B cuts the tunnel's connections on edge A.
	tok2, err := w.CLI(ctx, 1, "tunnel", "create", "web2")
	if err != nil {
		t.Fatal(err)
	}
	token2 := filepath.Join(dir, "web2.token")
	if err := os.WriteFile(token2, []byte(tok2), 0o600); err != nil {
		t.Fatal(err)
	}
	conn3 := startConnector(t, w, n.Node("conn"), token2, "web2-replica", ingress)
	eventually(t, 10*time.Second, "web2's connections on edge A", func() error {
		var ts []struct {
			Name        string
			Connections []json.RawMessage
		}
		if err := w.Admin(ctx, 0, http.MethodGet, "/v1/tunnels", &ts); err != nil {
			return err
		}
		for _, x := range ts {
			if x.Name == "web2" && len(x.Connections) > 0 {
				return nil
			}
		}
		return fmt.Errorf("none: %+v", ts)
	})
	start = time.Now()
	if err := w.Admin(ctx, 1, http.MethodDelete, "/v1/tunnels/web2", nil); err != nil {
		t.Fatal(err)
	}
	line, err = testnet.WaitLog(w.Edges[0].Proc, time.Second, "tunnel deleted; its connections dropped", "name=web2")
	if err != nil {
		t.Fatalf("edge A after the deletion on edge B: %v\n%s", err, w.Edges[0].Proc.Output())
	}
	t.Logf("tunnel deleted on edge B, its connections on edge A dropped after %v: %s", time.Since(start).Round(time.Millisecond), line)
	if err := noConnections(ctx, w, 0, "web2", start.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-conn3.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the connector still runs after its tunnel was deleted")
	}
	if !strings.Contains(conn3.Output(), "tunnel deleted") {
		t.Errorf("the connector does not say the tunnel was deleted:\n%s", conn3.Output())
	}
	if err := echo(0); err == nil {
		t.Fatal("users still reach the rotated tunnel through edge A without a connector")
	}
}

// propagation makes 1,000 registry changes on edge A (500 tunnels created
// through its admin socket, then deleted) and measures when edge B applied
// each (its log line's time) from the moment the request was sent.
func propagation(ctx context.Context, t *testing.T, w *testnet.MultiEdgeWorld) {
	t.Helper()
	const rounds, each = 4, 125
	var lat []time.Duration
	for r := range rounds {
		sent := map[string]time.Time{}
		for i := range each {
			name := fmt.Sprintf("p%d-%d", r, i)
			sent["c/"+name] = time.Now()
			if err := w.Admin(ctx, 0, http.MethodPost, "/v1/tunnels/"+name, nil); err != nil {
				t.Fatal(err)
			}
		}
		for i := range each {
			name := fmt.Sprintf("p%d-%d", r, i)
			sent["d/"+name] = time.Now()
			if err := w.Admin(ctx, 0, http.MethodDelete, "/v1/tunnels/"+name, nil); err != nil {
				t.Fatal(err)
			}
		}
		last := fmt.Sprintf("name=p%d-%d", r, each-1)
		if _, err := testnet.WaitLog(w.Edges[1].Proc, 5*time.Second, "tunnel deleted", last); err != nil {
			t.Fatal(err)
		}
		out := w.Edges[1].Proc.Output()
		created := testnet.LogTimes(out, "name", "tunnel created", fmt.Sprintf("name=p%d-", r))
		deleted := testnet.LogTimes(out, "name", "tunnel deleted", fmt.Sprintf("name=p%d-", r))
		for key, t0 := range sent {
			kind, name, _ := strings.Cut(key, "/")
			at, ok := created[name]
			if kind == "d" {
				at, ok = deleted[name]
			}
			if !ok {
				t.Fatalf("edge B never applied %s of tunnel %s", map[string]string{"c": "the creation", "d": "the deletion"}[kind], name)
			}
			lat = append(lat, at.Sub(t0))
		}
	}
	slices.Sort(lat)
	p := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	t.Logf("registry changes made on edge A and applied by edge B: %d changes, latency from the request: p50 %v, p99 %v, max %v (goal: p99 < 1s)",
		len(lat), p(0.50).Round(time.Microsecond), p(0.99).Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))
	if p(0.99) >= time.Second {
		t.Errorf("p99 %v: changes take more than a second to reach the other edge", p(0.99))
	}
}

func startConnector(t *testing.T, w *testnet.MultiEdgeWorld, node *testnet.Node, tokenFile, name, ingress string) *testnet.Connector {
	t.Helper()
	path := filepath.Join(w.Dir, name+"-ingress.yml")
	if err := os.WriteFile(path, []byte(ingress), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &testnet.Connector{Node: node, Ingress: path, Metrics: "127.0.0.1:9200"}
	p, err := node.Start(w.ConnBin, "tunnel", "run", "--token-file", tokenFile, "--config", path, "--metrics", c.Metrics)
	if err != nil {
		t.Fatal(err)
	}
	c.Proc = p
	if err := c.WaitReady(15 * time.Second); err != nil {
		t.Fatalf("connector %s: %v\n%s", name, err, p.Output())
	}
	return c
}

func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestMultiEdgeAdvertise: a connector whose token names only edge A
// spreads its connections over edge B too once edge B joins the
// deployment (on the same etcd, advertising itself), without a new token;
// when edge B stops, its connections come back to edge A.
func TestMultiEdgeAdvertise(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	n, _, w, dir := multiEdgeWorld(t, ctx, true, false)
	if err := w.StartEdge(ctx, 0); err != nil {
		t.Fatal(err)
	}
	tok, err := w.CLI(ctx, 0, "tunnel", "create", "web")
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "web.token")
	if err := os.WriteFile(tokenFile, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	conn := startConnector(t, w, n.Node("conn"), tokenFile, "replica", testnet.DefaultIngressYAML(n.Addr("origin", "lan", false).String()))
	count := func(edge int) int {
		var ts []struct{ Connections []json.RawMessage }
		if err := w.Admin(ctx, edge, http.MethodGet, "/v1/tunnels", &ts); err != nil || len(ts) == 0 {
			return -1
		}
		return len(ts[0].Connections)
	}
	eventually(t, 10*time.Second, "4 connections on edge A", func() error {
		if a := count(0); a != 4 {
			return fmt.Errorf("edge A has %d", a)
		}
		return nil
	})
	start := time.Now()
	if err := w.StartEdge(ctx, 1); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "connections spread over both edges", func() error {
		if a, b := count(0), count(1); a != 2 || b != 2 {
			return fmt.Errorf("edge A %d, edge B %d", a, b)
		}
		return nil
	})
	t.Logf("edge B joined: the connector, whose token names only edge A, has 2 connections on each edge after %v", time.Since(start).Round(time.Millisecond))
	// edge status on either edge lists both edges of the deployment, once
	// edge B's own first heartbeat is in the registry (it may come after
	// the connector found B: both start as B does).
	var st string
	eventually(t, 10*time.Second, "edge status on edge B lists both edges", func() error {
		var err error
		if st, err = w.CLI(ctx, 1, "status"); err != nil {
			return err
		}
		for _, want := range []string{"EDGE", w.Edges[0].Public + ":7844", w.Edges[1].Public + ":7844", "(this edge)"} {
			if !strings.Contains(st, want) {
				return fmt.Errorf("it lacks %q:\n%s", want, st)
			}
		}
		return nil
	})
	if strings.Contains(st, "gone") {
		t.Fatalf("edge status shows a live edge gone:\n%s", st)
	}
	t.Logf("edge status on edge B:\n%s", st)
	if !strings.Contains(conn.Output(), "the edges advertise a new list") {
		t.Errorf("the connector does not log the new list:\n%s", conn.Output())
	}
	for i, e := range w.Edges {
		c, err := n.Node("user").Dial("tcp", net.JoinHostPort(e.Public, fmt.Sprint(testnet.EdgeEchoPort)))
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		_, _ = c.Write([]byte("hi"))
		b := make([]byte, 2)
		if _, err := io.ReadFull(c, b); err != nil || string(b) != "hi" {
			t.Fatalf("echo through edge %d: %q %v", i, b, err)
		}
		c.Close()
	}
	start = time.Now()
	w.Edges[1].Proc.Stop()
	eventually(t, 30*time.Second, "connections back on edge A", func() error {
		if a := count(0); a != 4 {
			return fmt.Errorf("edge A has %d", a)
		}
		return nil
	})
	t.Logf("edge B stopped: 4 connections on edge A after %v", time.Since(start).Round(time.Millisecond))
}

// multiEdgeWorld builds the MultiEdge topology with a three-member etcd,
// the origins, and the two edges' configurations (ownAdvertise: each
// edge advertises itself only); start starts both edges.
func multiEdgeWorld(t *testing.T, ctx context.Context, ownAdvertise, start bool) (*testnet.Net, *testnet.EtcdCluster, *testnet.MultiEdgeWorld, string) {
	t.Helper()
	if err := testnet.EtcdAvailable(); err != nil {
		testnet.SkipOrFail(t, "several edges on etcd: %v", err)
	}
	n := testnet.New(t, testnet.MultiEdge())
	dir := t.TempDir()
	etcd := testnet.NewEtcd(t, n, "etcd1", "etcd2", "etcd3")
	if _, err := etcd.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	o, err := n.Node("origin").ServeOrigins()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	w, err := testnet.PrepareMultiEdge(n, dir, etcd, testnet.DefaultEdgeYAML("web"), ownAdvertise)
	if err != nil {
		t.Fatal(err)
	}
	for i := range w.Edges {
		if !start {
			break
		}
		if err := w.StartEdge(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	return n, etcd, w, dir
}

// noConnections checks, until deadline, that edge i holds no connector
// connection of the tunnel named name (or no longer lists the tunnel).
func noConnections(ctx context.Context, w *testnet.MultiEdgeWorld, i int, name string, deadline time.Time) error {
	for {
		var ts []struct {
			Name        string
			Connections []json.RawMessage
		}
		if err := w.Admin(ctx, i, http.MethodGet, "/v1/tunnels", &ts); err != nil {
			return err
		}
		n := 0
		for _, x := range ts {
			if x.Name == name {
				n = len(x.Connections)
			}
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("edge %d still holds %d connections of tunnel %s", i, n, name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
