package testnet_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/onramp-net/onramp/testnet"
)

// onFirst runs check at the first message holding kv and keeps its result.
type onFirst struct {
	kv    string
	check func() error
	mu    sync.Mutex
	done  bool
	err   error
}

func (o *onFirst) msg(m testnet.NotifyMsg) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.done && m.Has(o.kv) {
		o.done, o.err = true, o.check()
	}
}

func (o *onFirst) result() (bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.done, o.err
}

// TestSystemdNotify runs the real edge and `connector service run NAME`
// (the unit's ExecStart) with NOTIFY_SOCKET pointing at test sockets: the
// edge says READY=1 when its listeners accept; the connector, started
// while the edge is unreachable, says nothing of readiness until its first
// tunnel connection is up, and READY=1 when the edge has that connection;
// then WATCHDOG=1 every half of WATCHDOG_USEC, RELOADING=1 with
// MONOTONIC_USEC and READY=1 around SIGHUP, STOPPING=1 on SIGTERM, from
// both.
func TestSystemdNotify(t *testing.T) {
	n := testnet.New(t, testnet.Tunnel())
	if _, err := n.Node("origin").ServeOrigins(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	dir := t.TempDir()
	user, conn := n.Node("user"), n.Node("conn")
	edgeHTTP := net.JoinHostPort(n.Addr("edge", "user", false).String(), strconv.Itoa(testnet.EdgeHTTPPort))
	edgeTunnel := net.JoinHostPort(n.Addr("edge", "conn", false).String(), strconv.Itoa(testnet.EdgeTunnelPort))

	// The edge: at its READY=1, a user and a connector can connect.
	edgeServes := &onFirst{kv: "READY=1", check: func() error {
		for _, d := range []struct {
			node *testnet.Node
			addr string
		}{{user, edgeHTTP}, {conn, edgeTunnel}} {
			c, err := d.node.Dial("tcp", d.addr)
			if err != nil {
				return fmt.Errorf("at READY=1 the edge's %s did not accept: %w", d.addr, err)
			}
			c.Close()
		}
		return nil
	}}
	edgeSock, err := testnet.ListenNotify(dir, "edge.sock", edgeServes.msg)
	if err != nil {
		t.Fatal(err)
	}
	defer edgeSock.Close()
	rig, err := testnet.StartTunnelRig(ctx, n, testnet.RigOptions{Dir: dir, EdgeEnv: []string{edgeSock.Env(), "WATCHDOG_USEC=1000000"}})
	if err != nil {
		t.Fatal(err)
	}
	m, before, err := edgeSock.WaitFor("READY=1", 15*time.Second)
	if err != nil {
		t.Fatalf("edge: %v\n%s", err, rig.Edge.Output())
	}
	if _, err := edgeServes.result(); err != nil {
		t.Error(err)
	}
	if len(before) != 0 {
		t.Errorf("edge: messages before READY=1: %q", before)
	}
	if s, _ := m.Value("STATUS"); s != "serving: 0 connector connections" {
		t.Errorf("edge: READY=1 with STATUS %q, want \"serving: 0 connector connections\"", s)
	}
	t.Logf("edge: %q", m.Text)
	if _, _, err := edgeSock.WaitFor("WATCHDOG=1", 2*time.Second); err != nil {
		t.Errorf("edge: %v", err)
	}

	// The connector as the unit runs it, from an /etc/onramp of its own.
	etc := filepath.Join(dir, "etc-onramp")
	if err := os.Mkdir(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	tok, err := os.ReadFile(rig.TokenFile)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"demo.token": string(tok), "demo.ingress.yml": testnet.DefaultIngressYAML("198.18.30.2")} {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// At the connector's READY=1 the edge has its connection.
	edgeConns := func() (float64, error) {
		text, err := rig.EdgeMetrics()
		return testnet.MetricValue(text, "onramp_edge_connector_connections", `protocol="quic"`) +
			testnet.MetricValue(text, "onramp_edge_connector_connections", `protocol="http2"`), err
	}
	edgeHas := &onFirst{kv: "READY=1", check: func() error {
		c, err := edgeConns()
		if err == nil && c < 1 {
			err = errors.New("at the connector's READY=1 the edge has no connection of it")
		}
		return err
	}}
	connSock, err := testnet.ListenNotify(dir, "conn.sock", edgeHas.msg)
	if err != nil {
		t.Fatal(err)
	}
	defer connSock.Close()

	// The edge unreachable first: no READY=1 while the connector cannot
	// connect.
	link := n.Link("edge", "conn")
	if err := link.SetUp(ctx, false); err != nil {
		t.Fatal(err)
	}
	cmd := conn.Command(ctx, rig.ConnectorBin, "service", "run", "demo", "--etc", etc, "--metrics", "127.0.0.1:9200")
	cmd.Env = append(os.Environ(), connSock.Env(), "WATCHDOG_USEC=1000000") // keep-alives every 500ms
	p, err := conn.StartCmd(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if m, before, err := connSock.WaitFor("READY=1", 3*time.Second); err == nil {
		t.Fatalf("connector: READY=1 (%q) with the edge unreachable; before it: %q", m.Text, before)
	} else {
		var status string
		for _, m := range before {
			if s, ok := m.Value("STATUS"); ok {
				status = s
			}
		}
		if status != "0 of 4 connections up" {
			t.Errorf("connector with the edge unreachable: STATUS %q, want \"0 of 4 connections up\" (messages %q)", status, before)
		}
	}
	if c, err := edgeConns(); err != nil || c != 0 {
		t.Fatalf("edge has %v connections (%v) with the link down", c, err)
	}
	if err := link.SetUp(ctx, true); err != nil {
		t.Fatal(err)
	}
	m, _, err = connSock.WaitFor("READY=1", 40*time.Second)
	if err != nil {
		t.Fatalf("connector: %v\n%s", err, p.Output())
	}
	if done, err := edgeHas.result(); !done || err != nil {
		t.Errorf("connector READY=1 (%q): %v", m.Text, err)
	}
	if s, _ := m.Value("STATUS"); !strings.Contains(s, "connections up") || strings.HasPrefix(s, "0 of") {
		t.Errorf("connector: READY=1 with STATUS %q, want its connections", s)
	}
	t.Logf("connector: %q", m.Text)
	code, body, err := user.HTTPGet(edgeHTTP, "web.demo.test", "/ready")
	if err != nil || code != 200 || !strings.Contains(body, "hello from origin") {
		t.Errorf("through the tunnel right after READY=1: %d %q %v", code, body, err)
	}

	// WATCHDOG=1 every 500ms (WATCHDOG_USEC=1s), over 2.5s.
	var pets []time.Time
	deadline := time.Now().Add(2500 * time.Millisecond)
	for time.Now().Before(deadline) {
		m, err := connSock.Next(time.Until(deadline))
		if err != nil {
			break
		}
		if m.Has("WATCHDOG=1") {
			pets = append(pets, m.At)
		}
	}
	if len(pets) < 4 || len(pets) > 7 {
		t.Errorf("connector: %d WATCHDOG=1 in 2.5s, want about 5 (every 500ms)", len(pets))
	} else {
		mean := pets[len(pets)-1].Sub(pets[0]) / time.Duration(len(pets)-1)
		t.Logf("connector: %d WATCHDOG=1 in 2.5s, every %v", len(pets), mean.Round(time.Millisecond))
		if mean < 400*time.Millisecond || mean > 650*time.Millisecond {
			t.Errorf("connector: WATCHDOG=1 every %v, want 500ms", mean)
		}
	}

	// SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1.
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	m, _, err = connSock.WaitFor("RELOADING=1", 5*time.Second)
	if err != nil {
		t.Fatalf("connector SIGHUP: %v", err)
	}
	if v, ok := m.Value("MONOTONIC_USEC"); !ok {
		t.Errorf("connector RELOADING=1 without MONOTONIC_USEC: %q", m.Text)
	} else if _, err := strconv.ParseUint(v, 10, 64); err != nil {
		t.Errorf("MONOTONIC_USEC=%q", v)
	}
	if _, _, err := connSock.WaitFor("READY=1", 5*time.Second); err != nil {
		t.Errorf("connector after the reload: %v", err)
	}

	// SIGTERM: STOPPING=1, then a clean exit; the edge likewise.
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, _, err := connSock.WaitFor("STOPPING=1", 5*time.Second); err != nil {
		t.Errorf("connector SIGTERM: %v", err)
	}
	if err := p.Wait(); err != nil {
		t.Errorf("connector exit: %v\n%s", err, p.Output())
	}
	if err := rig.Edge.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, _, err := edgeSock.WaitFor("STOPPING=1", 5*time.Second); err != nil {
		t.Errorf("edge SIGTERM: %v", err)
	}
	if err := rig.Edge.Wait(); err != nil {
		t.Errorf("edge exit: %v", err)
	}
}

// TestSystemdNotifyL3 runs `connector service run NAME` for an L3
// connector (/etc/onramp/NAME.yml, as service install writes it) with
// NOTIFY_SOCKET: no READY=1 while the edge is unreachable, READY=1 at the
// first WireGuard handshake (the edge has the session then), RELOADING=1
// and READY=1 around SIGHUP, STOPPING=1 on SIGTERM.
func TestSystemdNotifyL3(t *testing.T) {
	n := testnet.New(t, testnet.L3())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	w, err := testnet.StartL3World(ctx, n, dir, "")
	if err != nil {
		t.Fatal(err)
	}
	etc := filepath.Join(dir, "etc-onramp")
	if err := os.Mkdir(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	conn := n.Node("conn")
	if _, err := w.AddConnector(ctx, conn, "site-a", filepath.Join(etc, "site-a.yml"), "198.18.130.0/24"); err != nil {
		t.Fatal(err)
	}
	// At READY=1 the edge reports the connector's handshake.
	edgeHandshake := func() (time.Time, error) {
		out, err := w.EdgeCLI(ctx, "status", "--json")
		if err != nil {
			return time.Time{}, err
		}
		var st struct {
			L3 struct {
				Connectors []struct {
					Name          string    `json:"name"`
					LastHandshake time.Time `json:"last_handshake"`
				} `json:"connectors"`
			} `json:"l3"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return time.Time{}, fmt.Errorf("edge status --json: %w", err)
		}
		for _, c := range st.L3.Connectors {
			if c.Name == "site-a" {
				return c.LastHandshake, nil
			}
		}
		return time.Time{}, fmt.Errorf("edge status --json lists no site-a: %s", out)
	}
	edgeHas := &onFirst{kv: "READY=1", check: func() error {
		hs, err := edgeHandshake()
		if err == nil && hs.IsZero() {
			err = errors.New("at the connector's READY=1 the edge has had no handshake with it")
		}
		return err
	}}
	sock, err := testnet.ListenNotify(dir, "l3.sock", edgeHas.msg)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()

	link := n.Link("edge", "conn")
	if err := link.SetUp(ctx, false); err != nil {
		t.Fatal(err)
	}
	cmd := conn.Command(ctx, w.ConnectorBin, "service", "run", "site-a", "--etc", etc, "--metrics", testnet.L3ConnectorReady)
	cmd.Env = append(os.Environ(), sock.Env())
	p, err := conn.StartCmd(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if m, _, err := sock.WaitFor("READY=1", 3*time.Second); err == nil {
		t.Fatalf("l3 connector: READY=1 (%q) with the edge unreachable", m.Text)
	}
	if err := link.SetUp(ctx, true); err != nil {
		t.Fatal(err)
	}
	m, _, err := sock.WaitFor("READY=1", 60*time.Second)
	if err != nil {
		t.Fatalf("l3 connector: %v\n%s", err, p.Output())
	}
	t.Logf("l3 connector: %q", m.Text)
	if done, err := edgeHas.result(); !done || err != nil {
		t.Errorf("l3 connector READY=1: %v", err)
	}
	if s, _ := m.Value("STATUS"); s != "WireGuard session with the edge up" {
		t.Errorf("l3 connector: READY=1 with STATUS %q", s)
	}

	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if m, _, err := sock.WaitFor("RELOADING=1", 5*time.Second); err != nil {
		t.Errorf("l3 connector SIGHUP: %v", err)
	} else if _, ok := m.Value("MONOTONIC_USEC"); !ok {
		t.Errorf("l3 connector RELOADING=1 without MONOTONIC_USEC: %q", m.Text)
	}
	if _, _, err := sock.WaitFor("READY=1", 5*time.Second); err != nil {
		t.Errorf("l3 connector after the reload: %v", err)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, _, err := sock.WaitFor("STOPPING=1", 5*time.Second); err != nil {
		t.Errorf("l3 connector SIGTERM: %v", err)
	}
	if err := p.Wait(); err != nil {
		t.Errorf("l3 connector exit: %v\n%s", err, p.Output())
	}
}
