package monitoring

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// promtool returns the path of promtool (Debian package prometheus,
// installed by scripts/deps.sh); without it the test is skipped, or fails
// under CI=true.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and promtool is missing (scripts/deps.sh installs the package prometheus): %v", err)
		}
		t.Skipf("promtool is missing (apt-get install prometheus, or scripts/deps.sh): %v", err)
	}
	return p
}

func runPromtool(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(promtool(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestAlertRulesPromtool: the rules pass `promtool check rules` and their
// unit tests (`promtool test rules`: each alert fires on its synthetic
// series and stays silent on the others).
func TestAlertRulesPromtool(t *testing.T) {
	out := runPromtool(t, "check", "rules", filepath.Join(Dir(), RulesFile))
	t.Log(strings.TrimSpace(out))
	out = runPromtool(t, "test", "rules", filepath.Join(Dir(), RulesTestFile))
	t.Log(strings.TrimSpace(out))
}

// TestAlertRulesUnitTested: every alert the unit tests name exists, and
// the tests make a good share of the rules fire.
func TestAlertRulesUnitTested(t *testing.T) {
	rules, err := LoadRules(filepath.Join(Dir(), RulesFile))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(Dir(), RulesTestFile))
	if err != nil {
		t.Fatal(err)
	}
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string           `yaml:"alertname"`
				ExpAlerts []map[string]any `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(b, &tests); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range rules.Rules() {
		names = append(names, r.Alert)
	}
	fired := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if !slices.Contains(names, a.Alertname) {
				t.Errorf("%s tests alert %s, which %s does not have", RulesTestFile, a.Alertname, RulesFile)
			}
			if len(a.ExpAlerts) > 0 {
				fired[a.Alertname] = true
			}
		}
	}
	if len(fired) < 8 {
		t.Errorf("the unit tests make only %d alerts fire, want at least 8", len(fired))
	}
	t.Logf("%d of %d alerts proven to fire: %v", len(fired), len(names), slices.Sorted(func(yield func(string) bool) {
		for n := range fired {
			if !yield(n) {
				return
			}
		}
	}))
}

// TestAlertRulesAnnotated: every rule is an alert with a unique name, a
// severity of critical, warning or info, and a summary and a
// description.
func TestAlertRulesAnnotated(t *testing.T) {
	rules, err := LoadRules(filepath.Join(Dir(), RulesFile))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range rules.Rules() {
		if r.Alert == "" {
			t.Errorf("rule %q is not an alert", r.Record)
			continue
		}
		if seen[r.Alert] {
			t.Errorf("alert %s twice", r.Alert)
		}
		seen[r.Alert] = true
		if s := r.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
			t.Errorf("alert %s: severity %q, want critical, warning or info", r.Alert, s)
		}
		for _, a := range []string{"summary", "description"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("alert %s has no %s annotation", r.Alert, a)
			}
		}
	}
	if len(seen) < 10 {
		t.Errorf("only %d alerts", len(seen))
	}
}

// varRef matches a Grafana variable reference in a query.
var varRef = regexp.MustCompile(`\$\{?([a-zA-Z0-9_]+)`)

// TestDashboard checks what Grafana needs to import the dashboard anywhere
// and show every panel: it parses, has a recent schema, a datasource
// variable that every panel and target uses, unique panel ids, at least
// one query per panel, no variable that is not defined, and every query
// is valid PromQL (promtool check rules on a file with each query as a
// recording rule, the Grafana variables replaced).
func TestDashboard(t *testing.T) {
	d, err := LoadDashboard(filepath.Join(Dir(), DashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("title %q, uid %q: want both", d.Title, d.UID)
	}
	if d.SchemaVersion < 39 {
		t.Errorf("schemaVersion %d, want that of Grafana 11 (39) or later", d.SchemaVersion)
	}
	vars := map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.Type == "query" && (v.Datasource == nil || v.Datasource.UID != "${datasource}") {
			t.Errorf("variable %s: datasource %+v, want the datasource variable", v.Name, v.Datasource)
		}
	}
	if !slices.ContainsFunc(d.Templating.List, func(v Variable) bool {
		return v.Name == "datasource" && v.Type == "datasource" && string(v.Query) == `"prometheus"`
	}) {
		t.Errorf("no datasource variable of type prometheus: the dashboard would not import anywhere")
	}
	ids := map[int]string{}
	panels := 0
	for _, p := range d.AllPanels() {
		if prev, ok := ids[p.ID]; ok || p.ID == 0 {
			t.Errorf("panel %q: id %d, already panel %q's (or 0)", p.Title, p.ID, prev)
		}
		ids[p.ID] = p.Title
		if p.Title == "" || p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X < 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %d: title %q, gridPos %+v: want a title and a place within the 24 columns", p.ID, p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		panels++
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || p.Datasource.Type != "prometheus" {
			t.Errorf("panel %d %q: datasource %+v, want the datasource variable", p.ID, p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %d %q has no target", p.ID, p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" || tg.RefID == "" {
				t.Errorf("panel %d %q: target %+v without expr or refId", p.ID, p.Title, tg)
			}
		}
	}
	// No two panels on the same cells.
	all := d.AllPanels()
	for i, a := range all {
		for _, b := range all[i+1:] {
			if a.GridPos != nil && b.GridPos != nil && overlap(*a.GridPos, *b.GridPos) {
				t.Errorf("panels %d %q %+v and %d %q %+v overlap", a.ID, a.Title, *a.GridPos, b.ID, b.Title, *b.GridPos)
			}
		}
	}
	if panels < 20 {
		t.Errorf("only %d panels", panels)
	}
	queries, err := d.Queries()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range queries {
		for _, m := range varRef.FindAllStringSubmatch(q.Expr, -1) {
			if !vars[m[1]] {
				t.Errorf("%s: variable $%s is not defined: %s", q.Where, m[1], q.Expr)
			}
		}
	}

	// Every query as a recording rule: promtool parses each.
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, q := range queries {
		expr, err := yaml.Marshal(Concrete(q.Expr))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "      # %s\n      - record: onramp_dashboard_query_%d\n        expr: %s", q.Where, i, expr)
	}
	path := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool(t), "check", "rules", path).CombinedOutput()
	if want := fmt.Sprintf("SUCCESS: %d rules found", len(queries)); err != nil || !strings.Contains(string(out), want) {
		// Name the panels of the rules promtool refused.
		for i, q := range queries {
			if regexp.MustCompile(fmt.Sprintf(`\bonramp_dashboard_query_%d\b`, i)).Match(out) {
				t.Errorf("%s: not valid PromQL: %s", q.Where, q.Expr)
			}
		}
		t.Fatalf("promtool check rules on the dashboard's %d queries: %v\n%s", len(queries), err, out)
	}
	t.Logf("%d panels, %d queries, all valid PromQL", panels, len(queries))
}

func overlap(a, b GridPos) bool {
	return a.X < b.X+b.W && b.X < a.X+a.W && a.Y < b.Y+b.H && b.Y < a.Y+a.H
}
