package connector_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onramp-net/onramp/l4proxy/connector"
	"github.com/onramp-net/onramp/l4proxy/edge"
	"github.com/onramp-net/onramp/l4proxy/edge/edgetest"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

// TestEdgesBeforeRun: the token's edges are listed, in its order, before
// any dial, with nothing recorded; the metrics have their series at zero.
func TestEdgesBeforeRun(t *testing.T) {
	tok, err := tunnel.NewToken([]string{"192.0.2.9:7844", "192.0.2.1:7844"}, [32]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	c, err := connector.New(connector.Options{Token: tok, Ingress: edgetest.Ingress(t, "ingress:\n  - service: http_status:404\n"), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	es := c.Edges()
	if len(es) != 2 || es[0].Edge != "192.0.2.9:7844" || es[1].Edge != "192.0.2.1:7844" {
		t.Fatalf("Edges() = %+v, want the token's two in its order", es)
	}
	for _, e := range es {
		if e.DialErrors != 0 || e.Lost != 0 || e.LastError != "" || !e.LastErrorAt.IsZero() {
			t.Errorf("%s: %+v before any dial", e.Edge, e)
		}
	}
	if c.Protocol() != "auto" || c.WantConnections() != connector.DefaultConnections || c.TunnelID() != tok.TunnelIDString() {
		t.Errorf("Protocol %q, WantConnections %d, TunnelID %s", c.Protocol(), c.WantConnections(), c.TunnelID())
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := map[string]int{}
	for _, mf := range mfs {
		series[mf.GetName()] = len(mf.GetMetric())
	}
	for name, n := range map[string]int{
		"onramp_connector_dial_errors_total":                      2,
		"onramp_connector_connections_lost_total":                 2,
		"onramp_connector_edge_connections":                       4, // 2 edges x quic, http2
		"onramp_connector_edge_connected_since_timestamp_seconds": 2,
		"onramp_connector_edge_last_error_timestamp_seconds":      2,
	} {
		if series[name] != n {
			t.Errorf("%s: %d series, want %d", name, series[name], n)
		}
	}
}

// TestEdgeErrors: a connector's connections show by edge in Connections,
// Edges and the metrics; when the edge goes away, the lost connections
// and the failed dials are counted by edge, with the last error and when.
func TestEdgeErrors(t *testing.T) {
	forEach(t, func(t *testing.T, proto string) {
		e := edgetest.Start(t, proto, "127.0.0.1", edge.Options{})
		r := e.StartConnector("ingress:\n  - service: http_status:404\n", func(o *connector.Options) {
			o.Tunnel = &tunnel.Config{HandshakeTimeout: time.Second} // a QUIC dial to no edge fails sooner
		})
		addr := e.Token.Edges[0]
		if n := edgetest.Metric(t, r.Registry, "onramp_connector_edge_connections", proto); n != 2 {
			t.Errorf("onramp_connector_edge_connections{edge=%q,protocol=%q} = %v, want 2", addr, proto, n)
		}
		if since := edgetest.Metric(t, r.Registry, "onramp_connector_edge_connected_since_timestamp_seconds", addr); since <= 0 ||
			time.Since(time.Unix(int64(since), 0)) > time.Minute {
			t.Errorf("onramp_connector_edge_connected_since_timestamp_seconds = %v", since)
		}
		es := r.Edges()
		if len(es) != 1 || es[0].Edge != addr || es[0].DialErrors != 0 || es[0].Lost != 0 || es[0].LastConnected.IsZero() {
			t.Fatalf("Edges() = %+v, want %s connected without errors", es, addr)
		}

		stopped := time.Now()
		e.Close()
		deadline := time.Now().Add(30 * time.Second)
		for {
			es = r.Edges()
			if es[0].Lost >= 2 && es[0].DialErrors >= 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("30 s after the edge stopped: %+v, want 2 lost connections and a failed dial", es)
			}
			time.Sleep(50 * time.Millisecond)
		}
		s := es[0]
		if s.LastError == "" || s.LastErrorAt.Before(stopped) || s.Failing < 1 {
			t.Errorf("after the edge stopped: %+v, want the last dial's error", s)
		}
		t.Logf("last error: %s", s.LastError)
		for name, min := range map[string]float64{
			"onramp_connector_dial_errors_total":                 1,
			"onramp_connector_connections_lost_total":            2,
			"onramp_connector_edge_last_error_timestamp_seconds": float64(stopped.Unix()),
		} {
			if v := edgetest.Metric(t, r.Registry, name, addr); v < min {
				t.Errorf("%s{edge=%q} = %v, want at least %v", name, addr, v, min)
			}
		}
		if n := edgetest.Metric(t, r.Registry, "onramp_connector_edge_connections", proto); n != 0 {
			t.Errorf("onramp_connector_edge_connections{protocol=%q} = %v with the edge gone", proto, n)
		}
	})
}
