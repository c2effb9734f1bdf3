package testnet_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onramp-net/onramp/packaging/monitoring"
	"github.com/onramp-net/onramp/testnet"
)

// promAPI queries a Prometheus HTTP API from inside a node.
type promAPI struct {
	node *testnet.Node
	addr string
}

// get fetches /api/v1/path with params and decodes its data into v.
func (p promAPI) get(path string, params url.Values, v any) error {
	resp, err := p.node.HTTPClient(10 * time.Second).Get("http://" + p.addr + "/api/v1/" + path + "?" + params.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var r struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return fmt.Errorf("%s: %s: %w", path, resp.Status, err)
	}
	if r.Status != "success" {
		return fmt.Errorf("%s %v: %s", path, params, r.Error)
	}
	return json.Unmarshal(r.Data, v)
}

// TestDashboardInPrometheus runs a real Prometheus (Debian's, from the
// package prometheus that scripts/deps.sh installs for promtool) in the
// edge's namespace, scraping the monitored world (see startMonitoredWorld)
// every second with the alerting rules loaded, as an operator would:
// every target is up under the job names the rules expect, every rule
// evaluates without error and none is pending or firing in the healthy
// world, each dashboard variable lists the instances it is for and no
// other, and every panel's query returns data.
func TestDashboardInPrometheus(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		testnet.SkipOrFail(t, "prometheus is missing (scripts/deps.sh installs it): %v", err)
	}
	dash, err := monitoring.LoadDashboard(filepath.Join(monitoring.Dir(), monitoring.DashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	w := startMonitoredWorld(t)

	dir := t.TempDir()
	jobs := map[string][]string{}
	for _, tg := range w.targets {
		jobs[tg.job] = append(jobs[tg.job], fmt.Sprintf("%q", tg.addr))
	}
	cfg := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
  - job_name: onramp-edge
    static_configs: [{targets: [%s]}]
  - job_name: onramp-connector
    static_configs: [{targets: [%s]}]
`, filepath.Join(monitoring.Dir(), monitoring.RulesFile), strings.Join(jobs["onramp-edge"], ", "), strings.Join(jobs["onramp-connector"], ", "))
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	edge := w.n.Node("edge")
	const listen = "127.0.0.1:9090"
	prom, err := edge.Start(bin, "--config.file", cfgPath, "--storage.tsdb.path", filepath.Join(dir, "data"),
		"--web.listen-address", listen, "--log.level", "warn")
	if err != nil {
		t.Fatal(err)
	}
	// Stopped before its data directory is removed (cleanups run last
	// registered first).
	t.Cleanup(prom.Stop)
	api := promAPI{node: edge, addr: listen}

	// Every target up, each scraped a few times (rates need two samples).
	var targets struct {
		ActiveTargets []struct {
			ScrapeURL string            `json:"scrapeUrl"`
			Labels    map[string]string `json:"labels"`
			Health    string            `json:"health"`
			LastError string            `json:"lastError"`
		} `json:"activeTargets"`
	}
	if err := waitFor(30*time.Second, func() bool {
		if api.get("targets", nil, &targets) != nil || len(targets.ActiveTargets) != len(w.targets) {
			return false
		}
		for _, tg := range targets.ActiveTargets {
			if tg.Health != "up" {
				return false
			}
		}
		return true
	}); err != nil {
		t.Fatalf("Prometheus's targets not all up: %v: %+v\n%s", err, targets.ActiveTargets, prom.Output())
	}
	time.Sleep(4 * time.Second)

	// The rules: all evaluated (health ok), none pending or firing.
	var rules struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Name      string `json:"name"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
				State     string `json:"state"`
				Alerts    []struct {
					Labels map[string]string `json:"labels"`
					Value  string            `json:"value"`
				} `json:"alerts"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := api.get("rules", nil, &rules); err != nil {
		t.Fatal(err)
	}
	evaluated := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			evaluated++
			if r.Health != "ok" {
				t.Errorf("rule %s: health %q: %s", r.Name, r.Health, r.LastError)
			}
			if r.State != "inactive" {
				t.Errorf("rule %s is %s in the healthy world: %+v", r.Name, r.State, r.Alerts)
			}
		}
	}
	if evaluated < 10 {
		t.Errorf("Prometheus loaded %d rules", evaluated)
	}

	// The variables: each lists what it is for.
	want := map[string][]string{
		"edge":        {testnet.L3EdgeMetrics},
		"connector":   {monitoredTunnelConnector},
		"l3connector": {monitoredL3Connector},
		"peer":        {"site-a"},
	}
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q string
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("variable %s: %v", v.Name, err)
		}
		selector, label, ok := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(q, "label_values("), ")"), ", ")
		if !ok {
			t.Fatalf("variable %s: query %q is not label_values(selector, label)", v.Name, q)
		}
		var series []map[string]string
		if err := api.get("series", url.Values{"match[]": {monitoring.Concrete(selector)}}, &series); err != nil {
			t.Fatalf("variable %s: %v", v.Name, err)
		}
		var got []string
		for _, s := range series {
			got = append(got, s[label])
		}
		slices.Sort(got)
		if got = slices.Compact(got); !slices.Equal(got, want[v.Name]) {
			t.Errorf("variable %s (%s) lists %q, want %q", v.Name, q, got, want[v.Name])
		}
	}

	// The panels: every query returns series.
	queries, err := dash.Queries()
	if err != nil {
		t.Fatal(err)
	}
	empty, asked := 0, 0
	for _, q := range queries {
		if strings.HasPrefix(q.Where, "variable ") {
			continue
		}
		asked++
		var res struct {
			Result []json.RawMessage `json:"result"`
		}
		if err := api.get("query", url.Values{"query": {monitoring.Concrete(q.Expr)}}, &res); err != nil {
			t.Errorf("%s: %v", q.Where, err)
			continue
		}
		if len(res.Result) == 0 {
			empty++
			t.Errorf("%s: no data: %s", q.Where, q.Expr)
		}
	}
	t.Logf("Prometheus scraped %d targets, evaluated %d rules, answered %d dashboard queries (%d empty)",
		len(targets.ActiveTargets), evaluated, asked, empty)
}
