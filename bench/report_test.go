package bench

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func loadFixture(t *testing.T) *Run {
	t.Helper()
	r, err := LoadRun("testdata/run-fixture.json")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestMarkdownFromFixture(t *testing.T) {
	r := loadFixture(t)
	md := Markdown(r, Areas, ReportOptions{ResultsPath: "bench/results/fixture.json",
		Charts: map[string]string{"l4-bulk-1": "bench/charts/l4-bulk-1.svg"}})
	for _, want := range []string{
		"Measured 2026-11-27 01:00 UTC, full run, commit `0123456789ab`",
		"| CPU | Test CPU, 2 cores |",
		"processes under test on CPU 1; harness, iperf3, load generator and origins on CPU 0",
		// The goal: 9.5 / 10, range 9/10 .. 10/10.
		"| onramp tunnel, QUIC / raw quic-go, throughput: goal >= 0.90 | 0.95 (0.90–1.00) | yes |",
		"![L4: single-stream bulk throughput](bench/charts/l4-bulk-1.svg)",
		"| **onramp tunnel, QUIC** | 9.50 (9.00–10.0) | 1.20 (1.10–1.30) |",
		"| raw quic-go | 10.0 | 1.00 |",
		"| HAProxy TCP (splice) | failed | failed |",
		"| kernel routing (ceiling) | 22.0 (20.0–25.0) | n/a |",
		"| onramp tunnel, QUIC | raw quic-go | throughput (higher is better) | 0.95 (0.90–1.00) | >= 0.90 (met) |",
		"| onramp tunnel, QUIC | kernel routing (ceiling) | throughput (higher is better) | 0.43 (0.36–0.50) |  |",
		"`throughput`: the iperf3 receiver's figure; or raw peers: the receiver's count",
		"`go run ./bench/cmd/bench -only '^kernel/bulk1$'`",
		"| dataplane/packet | ParseIPv4 | 41.0 (40.1–42.3) | 1561 (1513–1596) | 0 | 0 |",
		"- `haproxy/bulk1`: setup: haproxy: nothing listens \\| on port 7000",
		"## L3 connector (WireGuard)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
	// No ratio against a failed peer, nor a ratio to CPU n/a.
	if strings.Contains(md, "| onramp tunnel, QUIC | HAProxy") {
		t.Error("ratio against a failed peer")
	}
	if strings.Contains(md, "kernel routing (ceiling) | cpu_per_gb") {
		t.Error("ratio against an unmeasured metric")
	}
	golden := "testdata/run-fixture.md"
	if *update {
		if err := os.WriteFile(golden, []byte(md), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if md != string(want) {
		t.Errorf("markdown differs from %s (go test ./bench -run Markdown -update to accept):\n%s", golden, md)
	}
}

func TestWriteAndLoadRoundTrip(t *testing.T) {
	r := loadFixture(t)
	dir := t.TempDir()
	path, err := r.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != "20261127T010000Z-0123456789ab.json" {
		t.Errorf("file name %s", path)
	}
	newest, err := Newest(dir)
	if err != nil || newest != path {
		t.Errorf("Newest = %s, %v", newest, err)
	}
	back, err := LoadRun(path)
	if err != nil {
		t.Fatal(err)
	}
	a := Markdown(r, Areas, ReportOptions{})
	b := Markdown(back, Areas, ReportOptions{})
	if a != b {
		t.Error("markdown changed after a write/load round trip")
	}
}

func TestCharts(t *testing.T) {
	dir := t.TempDir()
	charts, err := WriteCharts(loadFixture(t), Areas, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(charts) != 2 || charts["l4-bulk-1"] != "l4-bulk-1.svg" || charts["l4-latency"] != "l4-latency.svg" {
		t.Fatalf("charts %v", charts)
	}
	svg, err := os.ReadFile(filepath.Join(dir, "l4-bulk-1.svg"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(svg, []byte("<svg")) || !bytes.Contains(svg, []byte("raw quic-go")) {
		t.Error("chart is not an SVG naming its bars")
	}
}

func TestCompare(t *testing.T) {
	old := loadFixture(t)
	cur := loadFixture(t)
	q := cur.Scenario("tunnel-quic/bulk1").Metric("throughput")
	q.Summary = Summary{N: 3, Median: 12, Min: 11, Max: 13}
	var b bytes.Buffer
	Compare(&b, old, cur)
	out := b.String()
	for _, want := range []string{
		"tunnel-quic/bulk1", "9.50 (9.00–10.0) Gbit/s", "12.0 (11.0–13.0) Gbit/s", "+26.3%", "better",
		"rawquic/bulk1", "~ (ranges overlap: noise)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("compare output lacks %q:\n%s", want, out)
		}
	}
	a, c := GoBenchFiles(old, cur)
	if !strings.Contains(a, "BenchmarkParseIPv4-2") || a != c {
		t.Errorf("benchstat input: %q", a)
	}
}

func TestScenariosValid(t *testing.T) {
	all := Scenarios()
	if err := Validate(all, Areas); err != nil {
		t.Fatal(err)
	}
	// Every onramp L4 scenario has at least one peer, or is itself the
	// reference of another (the direct proxy's other relay strategies,
	// compared with splice).
	for _, s := range all {
		if !s.Onramp || s.Area == "go" {
			continue
		}
		peers := 0
		for _, p := range all {
			if contains(p.PeerOf, s.Name) {
				peers++
			}
		}
		if peers == 0 && len(s.PeerOf) == 0 {
			t.Errorf("%s has no peer", s.Name)
		}
	}
	bad := append([]Scenario{}, all...)
	bad = append(bad, all[0])
	if err := Validate(bad, Areas); err == nil {
		t.Error("duplicate name accepted")
	}
}

// TestMerge: a later run's areas replace the base's whole (no ratio mixes
// two runs), the rest stays, and the report says where each came from.
func TestMerge(t *testing.T) {
	base := loadFixture(t)
	later := loadFixture(t)
	later.Date = later.Date.Add(48 * time.Hour)
	later.Only = "^kernel/"
	later.Machine.Commit = "fedcba9876543210"
	later.GoBench = nil
	var kept []ScenarioResult
	for _, s := range later.Scenarios {
		if s.Name == "kernel/bulk1" {
			s.Label = "kernel, measured again"
			kept = append(kept, s)
		}
	}
	later.Scenarios = kept
	area := kept[0].Area
	m, err := Merge(base, later)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range m.Scenarios {
		if s.Area == area && s.Name != "kernel/bulk1" {
			t.Errorf("%s of area %s stayed from the base run", s.Name, area)
		}
	}
	if len(m.Scenarios) >= len(base.Scenarios) || m.GoBench == nil {
		t.Errorf("merged: %d scenarios (base %d), go bench %v", len(m.Scenarios), len(base.Scenarios), m.GoBench != nil)
	}
	md := Markdown(m, Areas, ReportOptions{ResultsPath: "x.json"})
	if want := "Areas `" + area + "` measured again 2026-11-29 01:00 UTC, `make bench ONLY='^kernel/'`, commit `fedcba987654`"; !strings.Contains(md, want) {
		t.Errorf("the report lacks %q", want)
	}
	if !strings.Contains(md, "kernel, measured again") {
		t.Error("the report lacks the later run's scenario")
	}
	// Measured a third time: the second run's line goes, its JSON entry
	// stays.
	third := *later
	third.Date = third.Date.Add(time.Hour)
	third.Machine.Commit = "0123456789abcdef"
	m3, err := Merge(m, &third)
	if err != nil {
		t.Fatal(err)
	}
	md = Markdown(m3, Areas, ReportOptions{ResultsPath: "x.json"})
	if strings.Contains(md, "commit `fedcba987654`") || !strings.Contains(md, "commit `0123456789ab`") {
		t.Errorf("the report names a superseded run or not the latest:\n%s", md[:min(len(md), 800)])
	}
	if len(m3.Merged) != 2 {
		t.Errorf("merged runs recorded: %d, want 2", len(m3.Merged))
	}
	later.Quick = true
	if _, err := Merge(base, later); err == nil {
		t.Error("a quick run merged into a full one")
	}
}

// An onramp scenario may be the reference of another (a grid's cells):
// the ratio is listed, and no scenario is compared with itself.
func TestCompareRowsOnrampReference(t *testing.T) {
	sum := func(m float64) Summary { return Summary{N: 1, Median: m, Min: m, Max: m} }
	mk := func(name string, tp float64, peerOf ...string) ScenarioResult {
		return ScenarioResult{Name: name, Area: "l4-scale", Label: name, Onramp: true, PeerOf: peerOf,
			Metrics: []MetricResult{{Name: "throughput", Unit: "Gbit/s", Summary: sum(tp)}}}
	}
	run := &Run{Scenarios: []ScenarioResult{mk("s8-c1", 2, "s8-c4", "s8-c1"), mk("s8-c4", 3)}}
	run.Scenarios[1].Goals = []Goal{{Peer: "s8-c1", Metric: "throughput", Op: ">=", Ratio: 1}}
	var rows []*ScenarioResult
	for i := range run.Scenarios {
		rows = append(rows, &run.Scenarios[i])
	}
	got := compareRows(run, rows, Area{Key: "l4-scale", Compare: []string{"throughput"}})
	want := [][]string{{"s8-c4", "s8-c1", "throughput (higher is better)", "1.50", ">= 1.00 (met)"}}
	if len(got) != 1 || !slices.Equal(got[0], want[0]) {
		t.Errorf("rows %q, want %q", got, want)
	}
}

// A goal against two peers together is a ratio to their sum; an absolute
// goal checks the scenario's own figure; neither marks a row of the
// per-peer comparison, and a missing peer says so.
func TestGoalRowsSumAndAbsolute(t *testing.T) {
	sum := func(m, lo, hi float64) Summary { return Summary{N: 3, Median: m, Min: lo, Max: hi} }
	mk := func(name string, metric, unit string, s Summary) ScenarioResult {
		return ScenarioResult{Name: name, Area: "a", Label: name, Metrics: []MetricResult{{Name: metric, Unit: unit, Summary: s}}}
	}
	run := &Run{Scenarios: []ScenarioResult{
		mk("tunnel", "cpu_per_gb", "CPU-s/GB", sum(4.4, 4.3, 4.5)),
		mk("ends", "cpu_per_gb", "CPU-s/GB", sum(3.6, 3.5, 3.7)),
		mk("haproxy", "cpu_per_gb", "CPU-s/GB", sum(0.4, 0.3, 0.5)),
		mk("held", "per_stream", "KiB", sum(10.5, 10.2, 11)),
		mk("held2", "per_stream", "KiB", sum(22.7, 22.7, 22.7)),
		mk("t/bulk8", "throughput", "Gbit/s", sum(1.6, 1.6, 1.6)),
		mk("t/bulk1", "throughput", "Gbit/s", sum(2, 2, 2)),
	}}
	run.Scenarios[5].Label, run.Scenarios[6].Label = "tunnel", "tunnel"
	run.Scenarios[5].Goals = []Goal{{Peer: "t/bulk1", Metric: "throughput", Op: ">=", Ratio: 1}}
	run.Scenarios[0].Goals = []Goal{{Peer: "ends", Plus: "haproxy", Metric: "cpu_per_gb", Op: "<=", Ratio: 1.1},
		{Peer: "ends", Plus: "gone", Metric: "cpu_per_gb", Op: "<=", Ratio: 1.1}}
	run.Scenarios[3].Goals = []Goal{{Metric: "per_stream", Op: "<=", Limit: 16}}
	run.Scenarios[4].Goals = []Goal{{Metric: "per_stream", Op: "<=", Limit: 16}}
	got := goalRows(run)
	want := [][3]string{
		{"tunnel / (ends + haproxy), cpu_per_gb: goal <= 1.10", "1.10 (1.02–1.18)", "yes"},
		{"tunnel / (ends + gone), cpu_per_gb: goal <= 1.10", "not measured", "—"},
		{"held, per_stream: goal <= 16 KiB", "10.5 (10.2–11) KiB", "yes"},
		{"held2, per_stream: goal <= 16 KiB", "22.7 KiB", "no"},
		{"tunnel (t/bulk8) / t/bulk1, throughput: goal >= 1.00", "0.80", "no"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("goal rows\n%q\nwant\n%q", got, want)
	}
	if g := goalFor(&run.Scenarios[0], "ends", "cpu_per_gb"); g != nil {
		t.Errorf("the per-peer row of ends is marked with the goal against the sum %v", g)
	}
}
