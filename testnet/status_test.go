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
		len(regexp.MustCompile(`(?m)^\S+\s+quic\s+\S+ \S+\s+\S+\s+\d+$`).FindAllString(report, -1)) != 4 {
		t.Errorf("connector status does not show 4 QUIC connections")
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
