package monitoring

import (
	"slices"
	"strings"
	"testing"
)

func TestMetricNames(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`up == 0`, []string{"up"}},
		{`sum by (job, instance) (onramp_connector_edge_connections) == 0`, []string{"onramp_connector_edge_connections"}},
		{`sum(rate(onramp_edge_bytes_total{instance=~"$edge"}[$__rate_interval])) by (direction)`, []string{"onramp_edge_bytes_total"}},
		{`sum without (kind) (rate(a_total{reason!~"pass_.*|b"}[5m] offset 1h30m))`, []string{"a_total"}},
		// Label names in groupings and matchers, functions, keywords,
		// numbers, strings and variables are not metrics.
		{`a / on (instance) group_left (version) b and c unless d or bool e > 1e9 + 0x1f - Inf`, []string{"a", "b", "c", "d", "e"}},
		{`label_replace(x, "dst", "$1", "src", "(.*) y")`, []string{"x"}},
		{`time() - (onramp_edge_l3_peer_last_handshake_seconds{peer=~"${peer:regex}"} > 0)`, []string{"onramp_edge_l3_peer_last_handshake_seconds"}},
		{`process_open_fds{instance=~"$edge|$connector"} / process_max_fds`, []string{"process_max_fds", "process_open_fds"}},
		{`count by (le) (h_bucket) + h_bucket`, []string{"h_bucket"}},
		{`topk(5, q) + sum(r)`, []string{"q", "r"}},
		{`{__name__=~"m1|m2", job="x"} + {__name__="m3"}`, []string{"m1", "m2", "m3"}},
		{"x # a comment naming y\n+ z", []string{"x", "z"}},
	} {
		got, err := MetricNames(tc.expr)
		if err != nil {
			t.Errorf("MetricNames(%q): %v", tc.expr, err)
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("MetricNames(%q) = %q, want %q", tc.expr, got, tc.want)
		}
	}
}

func TestMetricNamesErrors(t *testing.T) {
	for _, expr := range []string{
		`{__name__=~"onramp_.*"}`, // names that cannot be checked
		`sum(a{job="x}) `,
		`rate(a[5m)`,
	} {
		if got, err := MetricNames(expr); err == nil {
			t.Errorf("MetricNames(%q) = %q, want an error", expr, got)
		}
	}
}

func TestConcrete(t *testing.T) {
	got := Concrete(`rate(a{instance=~"$edge|${connector}", peer=~"${peer:regex}"}[$__rate_interval])`)
	want := `rate(a{instance=~".*|.*", peer=~".*"}[5m])`
	if got != want {
		t.Errorf("Concrete = %q, want %q", got, want)
	}
	if strings.Contains(Concrete("x[$__interval] offset $__range"), "$") {
		t.Error("interval variables left")
	}
}

func TestSelectors(t *testing.T) {
	got, err := Selectors(`sum by (reason) (rate(x_total{instance=~"$edge", reason!~'pass_.*',kind="a\"b",}[5m])) / y + {__name__=~"m1|m2", job="j"}`)
	if err != nil {
		t.Fatal(err)
	}
	want := []Selector{
		{"x_total", []Matcher{{"instance", "=~", "$edge"}, {"reason", "!~", "pass_.*"}, {"kind", "=", `a"b`}}},
		{"y", nil},
		{"m1", []Matcher{{"job", "=", "j"}}},
		{"m2", []Matcher{{"job", "=", "j"}}},
	}
	if !slices.EqualFunc(got, want, func(a, b Selector) bool {
		return a.Metric == b.Metric && slices.Equal(a.Matchers, b.Matchers)
	}) {
		t.Errorf("Selectors = %+v\nwant %+v", got, want)
	}
	for _, bad := range []string{`x{a}`, `x{a="b" c="d"}`, `x{a=b}`} {
		if got, err := Selectors(bad); err == nil {
			t.Errorf("Selectors(%q) = %+v, want an error", bad, got)
		}
	}
}
