package testnet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/onramp-net/onramp/testnet"
)

// The parts of `edge status --json` and `connector status --json` the test
// reads (the commands' own structs live in their main packages).
type edgeStatusJSON struct {
	Edge struct {
		Registry    string    `json:"registry"`
		Started     time.Time `json:"started"`
		Connections int       `json:"connections"`
	} `json:"edge"`
	Tunnels []struct {
		Name        string `json:"name"`
		Connections []struct {
			Connector string    `json:"connector"`
			Protocol  string    `json:"protocol"`
			Remote    string    `json:"remote"`
			Since     time.Time `json:"since"`
			Draining  bool      `json:"draining"`
			Quiet     bool      `json:"quiet"`
		} `json:"connections"`
	} `json:"tunnels"`
}

type connectorStatusJSON struct {
	Ready  bool `json:"ready"`
	Tunnel struct {
		Protocol    string `json:"protocol"`
		Connections []struct {
			Edge     string    `json:"edge"`
			Protocol string    `json:"protocol"`
			Since    time.Time `json:"since"`
			RTTMs    float64   `json:"rtt_ms"`
			Sent     uint64    `json:"sent"`
			Lost     uint64    `json:"lost"`
		} `json:"connections"`
		Edges []struct {
			Edge        string    `json:"edge"`
			Connections int       `json:"connections"`
			DialErrors  uint64    `json:"dial_errors"`
			Lost        uint64    `json:"lost"`
			LastError   string    `json:"last_error"`
			LastErrorAt time.Time `json:"last_error_at"`
		} `json:"edges"`
	} `json:"tunnel"`
}

// TestStatusCommands runs a real edge and connector (QUIC): edge status
// lists the tunnel with the connector's 4 connections, connector status
// its 4 QUIC connections over the token's two edge addresses, and both
// binaries' metrics agree. With the edge stopped, edge status says no
// edge runs, and connector status reports each edge address failing with
// its dial errors and the last error.
func TestStatusCommands(t *testing.T) {
	w := newTunnelWorld(t)
	c := w.connector("conn", "quic", "")
	ctx := context.Background()
	conn := w.n.Node("conn")
	connectorStatus := func(args ...string) (string, error) {
		args = append([]string{"status", "--metrics", c.Metrics}, args...)
		out, err := conn.Command(ctx, w.rig.ConnectorBin, args...).Output()
		if err != nil {
			return string(out), fmt.Errorf("connector %s: %w", strings.Join(args, " "), err)
		}
		return string(out), nil
	}

	// All four connections up on both sides.
	var es edgeStatusJSON
	var cs connectorStatusJSON
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := w.rig.EdgeCLI(ctx, "status", "--json")
		if err != nil {
			t.Fatal(err)
		}
		es = edgeStatusJSON{}
		if err := json.Unmarshal([]byte(out), &es); err != nil {
			t.Fatalf("edge status --json: %v\n%s", err, out)
		}
		out, err = connectorStatus("--json")
		if err != nil {
			t.Fatal(err)
		}
		cs = connectorStatusJSON{}
		if err := json.Unmarshal([]byte(out), &cs); err != nil {
			t.Fatalf("connector status --json: %v\n%s", err, out)
		}
		if es.Edge.Connections == 4 && len(cs.Tunnel.Connections) == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20s: the edge sees %d connections, the connector %d; want 4", es.Edge.Connections, len(cs.Tunnel.Connections))
		}
		time.Sleep(200 * time.Millisecond)
	}

	if len(es.Tunnels) != 1 || es.Tunnels[0].Name != w.rig.TunnelName || len(es.Tunnels[0].Connections) != 4 {
		t.Fatalf("edge status tunnels: %+v", es.Tunnels)
	}
	id := es.Tunnels[0].Connections[0].Connector
	for _, ec := range es.Tunnels[0].Connections {
		if ec.Protocol != "quic" || ec.Connector != id || ec.Since.IsZero() || ec.Draining || ec.Quiet {
			t.Errorf("edge status connection %+v, want a live QUIC connection of connector %s", ec, id)
		}
	}
	if !strings.HasPrefix(es.Edge.Registry, "bbolt ") || es.Edge.Started.IsZero() {
		t.Errorf("edge status: registry %q, started %v", es.Edge.Registry, es.Edge.Started)
	}
	report, err := w.rig.EdgeCLI(ctx, "status")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("edge status:\n%s", report)
	if n := len(regexp.MustCompile(`(?m)^`+w.rig.TunnelName+`\s+`+id[:8]+`\s+quic\s+\S+\s+.*\slive$`).FindAllString(report, -1)); n != 4 {
		t.Errorf("edge status shows %d live QUIC connections of %s, want 4", n, id[:8])
	}

	if !cs.Ready || cs.Tunnel.Protocol != "quic" || len(cs.Tunnel.Edges) != 2 {
		t.Fatalf("connector status: %+v", cs)
	}
	perEdge := map[string]int{}
	for _, cc := range cs.Tunnel.Connections {
		if cc.Protocol != "quic" || cc.Since.IsZero() {
			t.Errorf("connector status connection %+v, want QUIC", cc)
		}
		// The handshake alone sent packets and measured the round trip.
		if cc.RTTMs <= 0 || cc.Sent == 0 || cc.Lost > cc.Sent {
			t.Errorf("connector status connection %+v: no round-trip time or packet counts", cc)
		}
		perEdge[cc.Edge]++
	}
	for _, e := range cs.Tunnel.Edges {
		if e.Connections != perEdge[e.Edge] || e.DialErrors != 0 {
			t.Errorf("connector status edge %+v (%d connections listed)", e, perEdge[e.Edge])
		}
	}
	report, err = connectorStatus()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("connector status:\n%s", report)
	if !regexp.MustCompile(`(?m)^connections\s+4 live of 4$`).MatchString(report) ||
		len(regexp.MustCompile(`(?m)^\S+\s+quic\s+\S+ \S+\s+\S+\s+\d+\s+[\d.]+ ms\s+[\d.]+% of \d+ packets$`).FindAllString(report, -1)) != 4 {
		t.Errorf("connector status does not show 4 QUIC connections with their round-trip times and losses")
	}

	em, err := w.rig.EdgeMetrics()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{
		`onramp_edge_tunnels{state="connected"}`:     1,
		`onramp_edge_connector_connections_quiet`:    0,
		`onramp_edge_connector_connections_draining`: 0,
	} {
		if got := testnet.MetricValue(em, name); !strings.Contains(em, name+" ") || got != want {
			t.Errorf("edge metric %s = %v, want %v", name, got, want)
		}
	}
	cm, err := conn.Metrics(c.Metrics)
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, e := range cs.Tunnel.Edges {
		total += testnet.MetricValue(cm, "onramp_connector_edge_connections", `edge="`+e.Edge+`"`, `protocol="quic"`)
	}
	if total != 4 {
		t.Errorf("onramp_connector_edge_connections{protocol=quic} sum to %v over the edges, want 4", total)
	}

	// The edge stops: the connector's dials fail.
	stopped := time.Now()
	w.rig.Edge.Stop()
	if out, err := w.rig.EdgeCLI(ctx, "status"); err == nil || !strings.Contains(err.Error(), "no running edge answers") {
		t.Errorf("edge status with the edge stopped: %v\n%s", err, out)
	}
	deadline = time.Now().Add(60 * time.Second)
	for {
		out, err := connectorStatus("--json")
		if err != nil {
			t.Fatal(err)
		}
		cs = connectorStatusJSON{}
		if err := json.Unmarshal([]byte(out), &cs); err != nil {
			t.Fatalf("connector status --json: %v\n%s", err, out)
		}
		failing := 0
		for _, e := range cs.Tunnel.Edges {
			if e.DialErrors > 0 {
				failing++
			}
		}
		if failing == len(cs.Tunnel.Edges) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("60s after the edge stopped, not every edge address has a failed dial: %+v", cs.Tunnel.Edges)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if cs.Ready || len(cs.Tunnel.Connections) != 0 {
		t.Errorf("with the edge stopped: ready %v, %d connections", cs.Ready, len(cs.Tunnel.Connections))
	}
	lost := uint64(0)
	for _, e := range cs.Tunnel.Edges {
		lost += e.Lost
		if e.LastError == "" || e.LastErrorAt.Before(stopped) || e.Connections != 0 {
			t.Errorf("edge %s: %+v, want its last dial error", e.Edge, e)
		}
	}
	if lost != 4 {
		t.Errorf("%d connections lost, want the 4 the edge closed", lost)
	}
	report, err = connectorStatus()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("connector status, the edge stopped:\n%s", report)
	if n := len(regexp.MustCompile(`(?m)^\S+\s+failing \(\d+ dials?\)\s+0\s+\d+\s+\d+\s+\S+ ago: dial quic .+$`).FindAllString(report, -1)); n != 2 {
		t.Errorf("connector status shows %d edge addresses failing with a dial error, want 2", n)
	}
	cm, err = conn.Metrics(c.Metrics)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range cs.Tunnel.Edges {
		if v := testnet.MetricValue(cm, "onramp_connector_dial_errors_total", `edge="`+e.Edge+`"`); v < 1 {
			t.Errorf("onramp_connector_dial_errors_total{edge=%q} = %v", e.Edge, v)
		}
	}
}

type l3EdgeStatusJSON struct {
	L3 struct {
		Enabled    bool `json:"enabled"`
		Clients    int  `json:"clients"`
		Connectors []struct {
			Name          string    `json:"name"`
			Endpoint      string    `json:"endpoint"`
			LastHandshake time.Time `json:"last_handshake"`
		} `json:"connectors"`
		Subnets []struct {
			Prefix  string   `json:"prefix"`
			Active  string   `json:"active"`
			Standby []string `json:"standby"`
		} `json:"subnets"`
	} `json:"l3"`
}

type l3ConnectorStatusJSON struct {
	Mode  string `json:"mode"`
	Ready bool   `json:"ready"`
	L3    struct {
		Name          string    `json:"name"`
		Endpoint      string    `json:"endpoint"`
		EdgeAddr      string    `json:"edge_addr"`
		LastHandshake time.Time `json:"last_handshake"`
		TxBytes       uint64    `json:"tx_bytes"`
		RxBytes       uint64    `json:"rx_bytes"`
	} `json:"l3"`
}

// TestL3Status: two L3 connectors share a LAN. edge status lists both
// with their handshakes and the LAN's owner, site-a (first by name) active
// and site-b standby, and the other way once site-a's uplink is down;
// connector status on site-a's host shows the edge, the handshake and the
// bytes sent.
func TestL3Status(t *testing.T) {
	n := testnet.New(t, testnet.L3Failover())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := testnet.SetupFailoverLAN(ctx, n, testnet.L3FailoverConnB); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	w, err := testnet.StartL3WorldYAML(ctx, n, dir, func(data string) string { return testnet.L3EdgeYAML(data, "") })
	if err != nil {
		t.Fatal(err)
	}
	lan := testnet.L3FailoverLAN.String()
	sites := map[string]*testnet.Node{"site-a": n.Node("conn"), "site-b": n.Node("conn2")}
	for _, name := range []string{"site-a", "site-b"} {
		config := fmt.Sprintf("%s/%s.yml", dir, name)
		if _, err := w.AddConnector(ctx, sites[name], name, config, lan); err != nil {
			t.Fatal(err)
		}
		if _, err := w.StartConnector(sites[name], config); err != nil {
			t.Fatal(err)
		}
	}
	edgeStatus := func() l3EdgeStatusJSON {
		t.Helper()
		out, err := w.EdgeCLI(ctx, "status", "--json")
		if err != nil {
			t.Fatal(err)
		}
		var st l3EdgeStatusJSON
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("edge status --json: %v\n%s", err, out)
		}
		return st
	}
	owner := func(st l3EdgeStatusJSON) string {
		for _, s := range st.L3.Subnets {
			if s.Prefix == lan {
				return s.Active + "/" + strings.Join(s.Standby, ",")
			}
		}
		return ""
	}
	waitOwner := func(want string, limit time.Duration) l3EdgeStatusJSON {
		t.Helper()
		var st l3EdgeStatusJSON
		if err := waitFor(limit, func() bool { st = edgeStatus(); return owner(st) == want }); err != nil {
			t.Fatalf("edge status: %s active/standby %q, want %q: %v", lan, owner(st), want, err)
		}
		return st
	}
	st := waitOwner("site-a/site-b", 20*time.Second)
	if !st.L3.Enabled || len(st.L3.Connectors) != 2 || len(st.L3.Subnets) != 1 {
		t.Fatalf("edge status l3: %+v", st.L3)
	}
	for _, c := range st.L3.Connectors {
		if c.LastHandshake.IsZero() || c.Endpoint == "" {
			t.Errorf("connector %+v: no handshake or endpoint", c)
		}
	}
	report, err := w.EdgeCLI(ctx, "status")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("edge status:\n%s", report)
	for _, want := range []string{`(?m)^connectors\s+2$`, `(?m)^site-a\s+\S+\s+\S+\s+\S+ ago\s+\d+\s+\d+$`,
		`(?m)^` + regexp.QuoteMeta(lan) + `\s+site-a\s+site-b$`} {
		if !regexp.MustCompile(want).MatchString(report) {
			t.Errorf("edge status lacks %s", want)
		}
	}

	out, err := sites["site-a"].Command(ctx, w.ConnectorBin, "status", "--json", "--metrics", testnet.L3ConnectorReady).Output()
	if err != nil {
		t.Fatalf("connector status: %v", err)
	}
	var cs l3ConnectorStatusJSON
	if err := json.Unmarshal(out, &cs); err != nil {
		t.Fatalf("connector status --json: %v\n%s", err, out)
	}
	if cs.Mode != "l3" || !cs.Ready || cs.L3.Name != "site-a" || cs.L3.LastHandshake.IsZero() || cs.L3.TxBytes == 0 ||
		!strings.HasSuffix(cs.L3.Endpoint, fmt.Sprint(":", testnet.L3EdgePort)) {
		t.Errorf("connector status: %+v", cs)
	}
	out, err = sites["site-a"].Command(ctx, w.ConnectorBin, "status", "--metrics", testnet.L3ConnectorReady).Output()
	if err != nil {
		t.Fatalf("connector status: %v", err)
	}
	t.Logf("connector status:\n%s", out)
	if !regexp.MustCompile(`(?m)^handshake\s+\S+ ago \(`).Match(out) {
		t.Errorf("connector status shows no handshake")
	}

	if err := n.Link("edge", "conn").SetUp(ctx, false); err != nil {
		t.Fatal(err)
	}
	waitOwner("site-b/site-a", 10*time.Second)
}
