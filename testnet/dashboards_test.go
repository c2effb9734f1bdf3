package testnet_test

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onramp-net/onramp/packaging/monitoring"
	"github.com/onramp-net/onramp/testnet"
)

// prometheusOwn are the series Prometheus makes itself for each target:
// the rules and the dashboard may name them though no binary exports them.
var prometheusOwn = map[string]bool{
	"up": true, "scrape_duration_seconds": true, "scrape_samples_scraped": true,
	"scrape_samples_post_metric_relabeling": true, "scrape_series_added": true,
	"ALERTS": true, "ALERTS_FOR_STATE": true,
}

// monitoredWorld is what the dashboard and the alerting rules watch,
// running for real in an L3 testnet: one edge serving L4 tunnels, an L3
// hub and its XDP pre-filter, tunnel demo's connector in conn2 (origins on
// lan2), L3 connector site-a in conn (the LAN host behind it) and alice's
// stock WireGuard client. Each metrics address is on a link address the
// edge node reaches, where a Prometheus can scrape them all.
type monitoredWorld struct {
	n       *testnet.Net
	targets []scrapeTarget
}

type scrapeTarget struct {
	who  string        // for messages
	job  string        // the job of the alerting rules' convention
	node *testnet.Node // where the process runs
	addr string        // its metrics address
}

// Metrics addresses of the monitored world's connectors, on their links
// to the edge.
const (
	monitoredTunnelConnector = "198.18.121.2:9200"
	monitoredL3Connector     = "198.18.120.2:9201"
)

// startMonitoredWorld starts the world and sends a little traffic through
// each path (so that series made on first use exist): alice's datagram to
// the LAN host, a TCP and a UDP echo through the edge's bindings.
func startMonitoredWorld(t *testing.T) *monitoredWorld {
	t.Helper()
	if err := testnet.WGQuickAvailable(); err != nil {
		testnet.SkipOrFail(t, "L3 end to end: %v", err)
	}
	n := testnet.New(t, testnet.L3())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	const tunnelPort, echoPort = 7844, 7000
	w, err := testnet.StartL3WorldYAML(ctx, n, dir, func(data string) string {
		return fmt.Sprintf(`data: %[1]s
listen:
  tunnels: "[::]:%[2]d"
  tls: "[::]:443"
  http: "[::]:80"
  metrics: "%[3]s"
advertise: ["198.18.121.1:%[2]d"]
bindings:
  - {listen: "tcp://[::]:%[4]d", tunnel: demo, service: echo.internal}
  - {listen: "udp://[::]:%[4]d", tunnel: demo, service: udpecho.internal}
l3:
  listen: "[::]:%[5]d"
  endpoint: "%[6]s:%[5]d"
  pools: {ipv4: %[7]s, ipv6: "%[8]s"}
xdp:
  interfaces: [eth0]
`, data, tunnelPort, testnet.L3EdgeMetrics, echoPort, testnet.L3EdgePort, testnet.L3Edge4, testnet.L3Pool4, testnet.L3Pool6)
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(w.Edge.Output(), "xdp pre-filter attached") {
		t.Fatalf("the edge did not attach its XDP pre-filter, whose counters the dashboard shows:\n%s", w.Edge.Output())
	}

	// The L3 side.
	conn := n.Node("conn")
	site := filepath.Join(dir, "site-a.yml")
	if _, err := w.AddConnector(ctx, conn, "site-a", site, "198.18.130.0/24", "fd00:130::/64"); err != nil {
		t.Fatal(err)
	}
	l3, err := conn.Start(w.ConnectorBin, "l3", "run", "--config", site, "--metrics", monitoredL3Connector)
	if err != nil {
		t.Fatal(err)
	}
	if err := waitFor(20*time.Second, func() bool {
		resp, err := conn.HTTPClient(time.Second).Get("http://" + monitoredL3Connector + "/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}); err != nil {
		t.Fatalf("L3 connector not ready: %v\n%s", err, l3.Output())
	}
	conf, err := w.EdgeCLI(ctx, "l3", "client", "add", "alice")
	if err != nil {
		t.Fatal(err)
	}
	client := n.Node("client")
	if _, err := client.WGQuickUp(ctx, fmt.Sprintf("onrd%d", os.Getpid()%1000000), []byte(conf)); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Node("lan").ServeOrigins(); err != nil {
		t.Fatal(err)
	}
	lanEcho := netip.AddrPortFrom(lanAddr(false), testnet.OriginEcho)
	if err := waitFor(10*time.Second, func() bool { return echoOnce(client, lanEcho, time.Second) == nil }); err != nil {
		t.Fatalf("alice does not reach the LAN host: %v", err)
	}

	// The L4 side.
	tokenFile := filepath.Join(dir, "demo.token")
	token, err := w.EdgeCLI(ctx, "tunnel", "create", "demo")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokenFile, []byte(strings.TrimSpace(token)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Node("lan2").ServeOrigins(); err != nil {
		t.Fatal(err)
	}
	rig := &testnet.TunnelRig{Net: n, Dir: dir, ConnectorBin: w.ConnectorBin}
	tc, err := rig.StartTunnelConnector(n.Node("conn2"), tokenFile, "demo", "quic", testnet.DefaultIngressYAML(lan2Addr(false).String()),
		"--metrics", monitoredTunnelConnector)
	if err != nil {
		t.Fatal(err)
	}
	if err := tc.WaitReady(20 * time.Second); err != nil {
		t.Fatalf("tunnel connector: %v\n%s", err, tc.Output())
	}
	bind := fmt.Sprintf("198.18.110.1:%d", echoPort)
	if err := client.EchoFrom(netip.Addr{}, bind, "dashboard"); err != nil {
		t.Fatalf("TCP echo through the tunnel: %v\n%s", err, tc.Output())
	}
	if err := client.UDPEcho(bind, 3); err != nil {
		t.Fatalf("UDP echo through the tunnel: %v\n%s", err, tc.Output())
	}
	return &monitoredWorld{n: n, targets: []scrapeTarget{
		{"edge", "onramp-edge", n.Node("edge"), testnet.L3EdgeMetrics},
		{"tunnel connector", "onramp-connector", n.Node("conn2"), monitoredTunnelConnector},
		{"L3 connector", "onramp-connector", conn, monitoredL3Connector},
	}}
}

// TestDashboardMetricsExported scrapes the edge and the connectors of a
// monitored world (see startMonitoredWorld) and fails naming every metric
// a dashboard panel, a dashboard variable or an alerting rule uses that
// none of them exports, and every label matcher of theirs that selects no
// exported series (a label the metric does not have, a value none of its
// series has).
func TestDashboardMetricsExported(t *testing.T) {
	queries := monitoringQueries(t)
	used := usedMetrics(t, queries)
	w := startMonitoredWorld(t)

	fams := map[string]string{}
	series := map[string][]map[string]string{}
	for _, s := range w.targets {
		text, err := s.node.Metrics(s.addr)
		if err != nil {
			t.Fatalf("scrape the %s at %s: %v", s.who, s.addr, err)
		}
		f := testnet.MetricFamilies(text)
		t.Logf("the %s exports %d metric families", s.who, len(f))
		maps.Copy(fams, f)
		for name, ls := range testnet.MetricSeries(text) {
			series[name] = append(series[name], ls...)
		}
	}

	var missing []string
	for _, name := range slices.Sorted(maps.Keys(used)) {
		if prometheusOwn[name] || testnet.Exported(fams, name) {
			continue
		}
		missing = append(missing, fmt.Sprintf("%s (in %s)", name, strings.Join(used[name], "; ")))
	}
	if len(missing) > 0 {
		t.Fatalf("%d metrics the dashboard or the alerting rules use are exported by no binary:\n  %s\nexported: %s",
			len(missing), strings.Join(missing, "\n  "), strings.Join(slices.Sorted(maps.Keys(fams)), " "))
	}
	t.Logf("all %d metrics the dashboard and the rules use are exported (of %d families)", len(used), len(fams))

	// Their label matchers: a label the metric does not have, or a value
	// none of its series has, selects nothing, and the panel stays empty
	// or the alert silent for ever.
	checked := 0
	for _, q := range queries {
		sels, err := monitoring.Selectors(q.Expr)
		if err != nil {
			t.Fatalf("%s: %v", q.Where, err)
		}
		for _, sel := range sels {
			if prometheusOwn[sel.Metric] {
				continue
			}
			for _, m := range sel.Matchers {
				if err := matches(series[sel.Metric], m); err != nil {
					t.Errorf("%s: %s{%s%s%q}: %v", q.Where, sel.Metric, m.Label, m.Op, m.Value, err)
				}
				checked++
			}
		}
	}
	t.Logf("%d label matchers checked against the exported series", checked)
}

// matches checks the matcher m against the series of a metric: its label
// exists on one of them (but job and instance, which Prometheus adds), and
// for = and =~ with a literal value (no Grafana variable), one of them
// has a value it matches.
func matches(series []map[string]string, m monitoring.Matcher) error {
	if m.Label == "job" || m.Label == "instance" {
		return nil
	}
	var values []string
	for _, ls := range series {
		if v, ok := ls[m.Label]; ok {
			values = append(values, v)
		}
	}
	if len(values) == 0 {
		return fmt.Errorf("no series of the metric has the label %s", m.Label)
	}
	if strings.Contains(m.Value, "$") {
		return nil
	}
	switch m.Op {
	case "=":
		if !slices.Contains(values, m.Value) {
			return fmt.Errorf("no series has %s=%q (values: %q)", m.Label, m.Value, values)
		}
	case "=~":
		re, err := regexp.Compile("^(?:" + m.Value + ")$")
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(values, re.MatchString) {
			return fmt.Errorf("no series has a value of %s that matches %q (values: %q)", m.Label, m.Value, values)
		}
	}
	return nil
}

// monitoringQueries returns the queries of the dashboard's panels and
// variables and of the alerting rules.
func monitoringQueries(t *testing.T) []monitoring.Query {
	t.Helper()
	dash, err := monitoring.LoadDashboard(filepath.Join(monitoring.Dir(), monitoring.DashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	queries, err := dash.Queries()
	if err != nil {
		t.Fatal(err)
	}
	rules, err := monitoring.LoadRules(filepath.Join(monitoring.Dir(), monitoring.RulesFile))
	if err != nil {
		t.Fatal(err)
	}
	return append(queries, rules.Queries()...)
}

// usedMetrics returns the metric names the queries use, each with where.
func usedMetrics(t *testing.T, queries []monitoring.Query) map[string][]string {
	t.Helper()
	used := map[string][]string{}
	for _, q := range queries {
		names, err := monitoring.MetricNames(q.Expr)
		if err != nil {
			t.Fatalf("%s: %v", q.Where, err)
		}
		for _, name := range names {
			used[name] = append(used[name], q.Where)
		}
	}
	if len(used) < 10 {
		t.Fatalf("the dashboard and the rules name only %d metrics: %v", len(used), slices.Sorted(maps.Keys(used)))
	}
	return used
}

// TestMetricFamilies: the names of a /metrics text, a histogram's series
// included, and nothing else.
func TestMetricFamilies(t *testing.T) {
	text := `# HELP a_total Things.
# TYPE a_total counter
a_total{kind="x"} 1
# TYPE lat_seconds histogram
lat_seconds_bucket{le="+Inf"} 2
lat_seconds_sum 0.5
lat_seconds_count 2
# TYPE s summary
s_sum 1
s_count 1
bare 3
`
	fams := testnet.MetricFamilies(text)
	for _, name := range []string{"a_total", "lat_seconds", "lat_seconds_bucket", "lat_seconds_sum", "lat_seconds_count", "s", "s_sum", "s_count", "bare"} {
		if !testnet.Exported(fams, name) {
			t.Errorf("%s: not exported, want exported (families %v)", name, fams)
		}
	}
	for _, name := range []string{"a", "a_total_count", "s_bucket", "bare_sum", "kind", "HELP"} {
		if testnet.Exported(fams, name) {
			t.Errorf("%s: exported, want not", name)
		}
	}
}

func TestMetricSeries(t *testing.T) {
	got := testnet.MetricSeries("# TYPE a counter\na{x=\"1\",y=\"q\\\"\\\\ \\n,}\"} 2\nb 3\nc{} 1\n")
	want := map[string][]map[string]string{
		"a": {{"x": "1", "y": "q\"\\ \n,}"}},
		"b": {{}},
		"c": {{}},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("MetricSeries = %q, want %q", got, want)
	}
}
