package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/onramp-net/onramp/cmd/edge/edgeapi"
	"github.com/onramp-net/onramp/l3router/l3config"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

// TestSubnetOwners: a subnet one connector advertises is its; a shared
// one is the active owner's, the others standbys, in name order.
func TestSubnetOwners(t *testing.T) {
	shared, v6, own := netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("fd00:1::/64"), netip.MustParsePrefix("10.2.0.0/16")
	conns := []l3PeerInfo{
		{Name: "a", Subnets: []netip.Prefix{shared, v6}, Standby: []netip.Prefix{shared}},
		{Name: "b", Subnets: []netip.Prefix{shared, own}, Active: []netip.Prefix{shared}},
		{Name: "c", Subnets: []netip.Prefix{shared, v6}, Standby: []netip.Prefix{shared}},
	}
	got := subnetOwners(conns)
	want := []subnetStatus{
		{Prefix: shared, Active: "b", Standby: []string{"a", "c"}},
		{Prefix: own, Active: "b"},
		// Shared, the hub not (yet) telling: the first by name.
		{Prefix: v6, Active: "a", Standby: []string{"c"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("subnetOwners:\n got %+v\nwant %+v", got, want)
	}
}

// TestStatusReport: the report shows each connection with its state,
// the tunnels without one, and the L3 connectors and subnet owners.
func TestStatusReport(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	st := &edgeStatus{
		Edge: edgeSelf{Version: "v1.2.3", Registry: "bbolt /var/lib/onramp-edge/edge.db", Advertise: []string{"edge.example.com:7844"},
			Listen: "[::]:7844", Started: now.Add(-3 * time.Hour), Now: now, Connections: 3, Quiet: 1, Draining: 1},
		Tunnels: []tunnelInfo{
			{Name: "office", ID: "00112233445566778899aabbccddeeff", Connections: []connInfo{
				{Connector: "0a0b0c0d0e0f10111213141516171819", Protocol: "quic", Remote: "198.51.100.7:40000", Since: now.Add(-90 * time.Second), Streams: 3, Rate: 12345},
				{Connector: "0a0b0c0d0e0f10111213141516171819", Protocol: "http2", Remote: "198.51.100.7:40001", Since: now.Add(-time.Minute), Quiet: true},
				{Connector: "ffeeddccbbaa99887766554433221100", Protocol: "quic", Remote: "[2001:db8::7]:40002", Since: now.Add(-time.Second), Draining: true, Quiet: true},
			}},
			{Name: "lab", ID: "ffeeddccbbaa99887766554433221100"},
		},
		L3: l3Summary{Enabled: true, Listen: "[::]:51820", Endpoint: "edge.example.com:51820", Clients: 3, ClientsRecent: 1,
			Connectors: []l3ConnectorStatus{
				{Name: "site-a", Address4: netip.MustParseAddr("100.96.0.2"), Address6: netip.MustParseAddr("fd6f::2"),
					Endpoint: "203.0.113.5:51820", LastHandshake: now.Add(-12 * time.Second), RxBytes: 100, TxBytes: 200},
				{Name: "site-b", Address4: netip.MustParseAddr("100.96.0.3"), Address6: netip.MustParseAddr("fd6f::3")},
			},
			Subnets: []subnetStatus{{Prefix: netip.MustParsePrefix("10.1.0.0/16"), Active: "site-a", Standby: []string{"site-b"}},
				{Prefix: netip.MustParsePrefix("10.9.0.0/16")}},
		},
	}
	var b bytes.Buffer
	if err := writeStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	t.Logf("report:\n%s", out)
	for _, want := range []string{
		`(?m)^edge\s+v1\.2\.3$`,
		`(?m)^registry\s+bbolt /var/lib/onramp-edge/edge\.db$`,
		`(?m)^advertise\s+edge\.example\.com:7844$`,
		`(?m)^up\s+3h0m0s \(since `,
		`(?m)^tunnels\s+2, 1 connected here; 3 connector connections \(1 quiet, 1 draining\)$`,
		`(?m)^TUNNEL\s+CONNECTOR\s+TRANSPORT\s+REMOTE\s+SINCE\s+FOR\s+STREAMS\s+RATE\s+STATE$`,
		`(?m)^office\s+0a0b0c0d\s+quic\s+198\.51\.100\.7:40000\s+\S+ \S+\s+1m30s\s+3\s+12\.3 kB/s\s+live$`,
		`(?m)^office\s+0a0b0c0d\s+http2\s+198\.51\.100\.7:40001\s+\S+ \S+\s+1m0s\s+0\s+0 B/s\s+quiet$`,
		`(?m)^office\s+ffeeddcc\s+quic\s+\[2001:db8::7\]:40002\s+\S+ \S+\s+1s\s+0\s+0 B/s\s+draining$`,
		`(?m)^lab\s+-\s+.*offline \(no connection to this edge\)$`,
		`(?m)^clients\s+3 \(1 with a handshake in the last 3 minutes\)$`,
		`(?m)^connectors\s+2$`,
		`(?m)^site-a\s+100\.96\.0\.2,fd6f::2\s+203\.0\.113\.5:51820\s+12s ago\s+100\s+200$`,
		`(?m)^site-b\s+100\.96\.0\.3,fd6f::3\s+-\s+never\s+0\s+0$`,
		`(?m)^10\.1\.0\.0/16\s+site-a\s+site-b$`,
		`(?m)^10\.9\.0\.0/16\s+- \(none\)\s+-$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("report lacks %s", want)
		}
	}

	st.L3 = l3Summary{}
	st.Tunnels = nil
	b.Reset()
	if err := writeStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "l3: off") || strings.Contains(b.String(), "TUNNEL") {
		t.Errorf("report without tunnels and L3:\n%s", b.String())
	}
}

// TestStatusEndpoint: GET /v1/status answers the edge and its tunnels.
func TestStatusEndpoint(t *testing.T) {
	a := newTestApp(t, slog.New(slog.DiscardHandler))
	a.started = time.Now().Add(-time.Minute)
	h := a.adminHandler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/tunnels/demo", nil))
	if rec.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/status", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status: %d %s", rec.Code, rec.Body)
	}
	var st edgeStatus
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(st.Edge.Registry, "bbolt ") || !reflect.DeepEqual(st.Edge.Advertise, []string{"198.18.0.1:7844"}) ||
		!st.Edge.Started.Equal(a.started) || st.Edge.Now.Before(a.started) || st.Edge.Version == "" {
		t.Errorf("edge: %+v", st.Edge)
	}
	if len(st.Tunnels) != 1 || st.Tunnels[0].Name != "demo" || len(st.Tunnels[0].Connections) != 0 || st.Tunnels[0].Token != "" {
		t.Errorf("tunnels: %+v", st.Tunnels)
	}
	if st.L3.Enabled { // no hub in the test app
		t.Errorf("l3: %+v", st.L3)
	}
	// The keys are the stable interface.
	for _, key := range []string{`"edge":`, `"registry":`, `"advertise":`, `"started":`, `"now":`, `"tunnels":`, `"l3":`, `"enabled":`} {
		if !strings.Contains(rec.Body.String(), key) {
			t.Errorf("status JSON lacks %s: %s", key, rec.Body)
		}
	}
}

// TestStatusCLI runs the built edge: edge status fails clearly without a
// running edge; with one it lists a tunnel's QUIC and HTTP/2 connections,
// the tunnel without any, the L3 connectors and who owns each subnet, as
// a report and as JSON; the edge's metrics count the tunnels by state.
func TestStatusCLI(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "edge")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	e := &edgeCLI{bin: bin, config: filepath.Join(dir, "edge.yml"), data: filepath.Join(dir, "data")}
	wgPort, metricsPort := freePort(t, "udp"), freePort(t, "tcp")
	cfg := fmt.Sprintf(`data: %s
listen: {tunnels: "127.0.0.1:%d", metrics: "127.0.0.1:%d"}
l3:
  listen: "127.0.0.1:%d"
  endpoint: "127.0.0.1:%d"
  pools: {ipv4: 198.18.96.0/20, ipv6: "fd00:96::/48"}
`, e.data, freeTunnelPort(t), metricsPort, wgPort, wgPort)
	if err := os.WriteFile(e.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	_, stderr, err := e.run(t, "status")
	if err == nil || !strings.Contains(stderr, "no running edge answers on its admin socket") {
		t.Fatalf("edge status without an edge: %v, %q; want a failure saying no edge runs", err, stderr)
	}

	out, _ := e.mustRun(t, "tunnel", "create", "demo")
	tok := parseToken(t, out)
	e.mustRun(t, "tunnel", "create", "idle")
	for _, site := range []struct{ name, subnets string }{{"site-a", "198.18.30.0/24,198.18.40.0/24"}, {"site-b", "198.18.30.0/24"}} {
		k, _ := l3config.GeneratePrivateKey()
		args := []string{"l3", "connector", "add", site.name, "--public-key", k.PublicKey().String(), "--out", filepath.Join(dir, site.name+".yml")}
		for _, s := range strings.Split(site.subnets, ",") {
			args = append(args, "--subnet", s)
		}
		e.mustRun(t, args...)
	}
	startEdge(t, e)
	for _, proto := range []string{tunnel.ProtoQUIC, tunnel.ProtoHTTP2} {
		if _, err := dialEdge(t, proto, tok); err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
	}

	out, _ = e.mustRun(t, "status", "--json")
	var st edgeStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if st.Edge.Connections != 2 || st.Edge.Started.IsZero() || !strings.HasPrefix(st.Edge.Registry, "bbolt ") {
		t.Errorf("edge: %+v", st.Edge)
	}
	tunnels := map[string]tunnelInfo{}
	for _, ti := range st.Tunnels {
		tunnels[ti.Name] = ti
	}
	protos := map[string]bool{}
	for _, c := range tunnels["demo"].Connections {
		protos[c.Protocol] = true
		if !strings.HasPrefix(c.Connector, "cc00") || c.Since.IsZero() || !strings.HasPrefix(c.Remote, "127.0.0.1:") || c.Draining {
			t.Errorf("demo connection %+v", c)
		}
	}
	if len(tunnels["demo"].Connections) != 2 || !protos["quic"] || !protos["http2"] || len(tunnels["idle"].Connections) != 0 {
		t.Errorf("tunnels: %+v, want demo with a quic and an http2 connection, idle with none", st.Tunnels)
	}
	if !st.L3.Enabled || len(st.L3.Connectors) != 2 || len(st.L3.Subnets) != 2 {
		t.Fatalf("l3: %+v", st.L3)
	}
	for _, s := range st.L3.Subnets {
		owners := append([]string{s.Active}, s.Standby...)
		switch s.Prefix.String() {
		case "198.18.40.0/24":
			if s.Active != "site-a" || len(s.Standby) != 0 {
				t.Errorf("198.18.40.0/24: %+v, want site-a's alone", s)
			}
		case "198.18.30.0/24": // shared: neither connector has been heard from
			if !strings.Contains(strings.Join(owners, ","), "site-a") || !strings.Contains(strings.Join(owners, ","), "site-b") {
				t.Errorf("198.18.30.0/24: %+v, want site-a and site-b", s)
			}
		}
	}

	out, _ = e.mustRun(t, "status")
	t.Logf("edge status:\n%s", out)
	for _, want := range []string{`(?m)^demo\s+cc000000\s+quic\s+127\.0\.0\.1:\d+\s.*\slive$`, `(?m)^demo\s+cc000000\s+http2\s`,
		`(?m)^idle\s+-\s.*offline`, `(?m)^connectors\s+2$`, `(?m)^site-a\s`, `(?m)^198\.18\.40\.0/24\s+site-a\s+-$`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("edge status lacks %s", want)
		}
	}

	// The running edge keeps its history: the edge's, the tunnels' and
	// the L3 hub's series are there from its first sample.
	var hist edgeapi.History
	if err := dialAdmin(filepath.Join(e.data, "admin.sock")).do(http.MethodGet, "/v1/history", &hist); err != nil {
		t.Fatalf("GET /v1/history: %v", err)
	}
	keys := map[string]bool{}
	for _, s := range hist.Series {
		keys[s.Key] = true
	}
	for _, key := range []string{"edge/to_origin", "edge/to_user", "tunnel/demo/to_origin", "tunnel/idle/to_user", "l3/rx",
		"l3/connector/site-a/rx", "l3/connector/site-b/tx", "drop/l4/datagrams", "drop/l3/acl", "limit/handshakes/maxHandshakes"} {
		if !keys[key] {
			t.Errorf("the history lacks %s (step %v, now %v)", key, hist.Step, hist.Now)
		}
	}

	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`onramp_edge_tunnels{state="connected"} 1`, `onramp_edge_tunnels{state="offline"} 1`,
		"onramp_edge_connector_connections_quiet 0", "onramp_edge_connector_connections_draining 0", `onramp_edge_info{registry="bbolt",version=`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
