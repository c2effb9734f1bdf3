package bench

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/onramp-net/onramp/cmd/edge/edgeconfig"
)

// The direct proxy's scenarios: one per strategy in each L4 area, the
// goals on splice, the peers shared with the tunnels, and the strategies
// interleaved with the peers of the goals.
func TestDirectScenarios(t *testing.T) {
	all := Scenarios()
	byName := map[string]Scenario{}
	for _, s := range all {
		byName[s.Name] = s
	}
	goals := map[string][]Goal{
		"bulk1": {
			{Peer: "kernel/bulk1", Metric: "throughput", Op: ">=", Ratio: 0.95},
			{Peer: "haproxy/bulk1", Metric: "throughput", Op: ">=", Ratio: 1.0},
			{Peer: "haproxy/bulk1", Metric: "cpu_per_gb", Op: "<=", Ratio: 1.0},
			{Peer: "direct-copy/bulk1", Metric: "cpu_per_gb", Op: "<=", Ratio: 0.5},
		},
		"bulk8":    nil,
		"echo":     {{Peer: "haproxy/echo", Metric: "p99", Op: "<=", Ratio: 1.0}},
		"connrate": {{Peer: "haproxy/connrate", Metric: "rate", Op: ">=", Ratio: 1.0}},
		"streams":  {{Peer: "haproxy/streams", Metric: "per_stream", Op: "<=", Ratio: 2.0}},
	}
	for suffix, want := range goals {
		splice := byName["direct-splice/"+suffix]
		if !splice.Onramp || !slices.Equal(splice.Goals, want) {
			t.Errorf("direct-splice/%s: onramp %v, goals %v, want %v", suffix, splice.Onramp, splice.Goals, want)
		}
		for _, g := range splice.Goals {
			if !slices.Contains(areaMetrics(splice.Area), g.Metric) {
				t.Errorf("direct-splice/%s: goal on %s, which the area %s does not compare", suffix, g.Metric, splice.Area)
			}
		}
		for _, st := range []string{"copy", "sockmap"} {
			s := byName["direct-"+st+"/"+suffix]
			if !s.Onramp || s.Area != splice.Area || !slices.Equal(s.PeerOf, []string{"direct-splice/" + suffix}) || len(s.Goals) > 0 {
				t.Errorf("direct-%s/%s: %+v", st, suffix, s)
			}
		}
		for _, p := range []string{"haproxy", "socat", "kernel"} {
			if s, ok := byName[p+"/"+suffix]; ok && !slices.Contains(s.PeerOf, "direct-splice/"+suffix) {
				t.Errorf("%s/%s is not a peer of direct-splice/%s", p, suffix, suffix)
			}
		}
	}
	// bulk1: the goal's peers and the three strategies run as one group,
	// with the tunnels, whose CPU goal names HAProxy too (socat, a peer
	// of no goal, runs apart).
	var sel []Scenario
	for _, s := range all {
		if strings.HasSuffix(s.Name, "/bulk1") {
			sel = append(sel, s)
		}
	}
	groups := goalGroups(sel)
	for i, s := range sel {
		if s.Name != "direct-splice/bulk1" {
			continue
		}
		var names []string
		for _, m := range groups[i] {
			names = append(names, sel[m].Name)
		}
		want := []string{"tunnel-quic/bulk1", "tunnel-http2/bulk1", "direct-splice/bulk1", "direct-copy/bulk1", "direct-sockmap/bulk1",
			"rawquic/bulk1", "rawtls/bulk1", "rawquic-ends/bulk1", "rawtls-ends/bulk1", "haproxy/bulk1", "kernel/bulk1"}
		if !slices.Equal(names, want) {
			t.Errorf("group of direct-splice/bulk1: %v, want %v", names, want)
		}
	}
}

func areaMetrics(key string) []string {
	for _, a := range Areas {
		if a.Key == key {
			return a.Compare
		}
	}
	return nil
}

func TestDirectEdgeYAML(t *testing.T) {
	y := directEdgeYAML("/tmp/d", "splice")
	for _, want := range []string{
		"data: /tmp/d\n",
		`{listen: "tcp://198.18.10.1:5201", service: "tcp://198.18.30.2:5201"}`,
		fmt.Sprintf(`{listen: "tcp://198.18.10.1:7000", service: "tcp://198.18.30.2:%d"}`, 7),
		"relay: {strategy: splice}\n",
		"limits: {maxConns: 50000, maxConnsPerSource: 50000}\n",
	} {
		if !strings.Contains(y, want) {
			t.Errorf("edge.yml lacks %q:\n%s", want, y)
		}
	}
	if strings.Contains(y, "tunnel") {
		t.Errorf("a direct binding names a tunnel:\n%s", y)
	}
	// The edge reads it: two direct bindings, the strategy forced.
	for _, st := range directStrategies {
		c, err := edgeconfig.Parse([]byte(directEdgeYAML("/tmp/d", st)))
		if err != nil {
			t.Fatalf("%s: %v", st, err)
		}
		if len(c.Bindings) != 2 || !c.Bindings[0].Direct() || !c.Bindings[1].Direct() || c.Relay.Strategy != st {
			t.Errorf("%s: bindings %+v, relay %+v", st, c.Bindings, c.Relay)
		}
	}
}

func TestRelayStrategy(t *testing.T) {
	for _, tc := range []struct{ out, want string }{
		{`time=2026-12-01T10:00:00Z level=INFO msg="relay: strategy for TCP-to-TCP paths" strategy=splice why="forced by configuration"`, "splice"},
		{"edge listening\n" + `level=INFO msg="relay: strategy for TCP-to-TCP paths" why="self-test" strategy="copy"` + "\nmore", "copy"},
		{`{"level":"INFO","msg":"relay: strategy for TCP-to-TCP paths","strategy":"sockmap"}`, ""}, // not the text format
		{`level=INFO msg="quic steering" strategy=reuseport`, ""},
		{"", ""},
	} {
		if got, _ := relayStrategy(tc.out); got != tc.want {
			t.Errorf("relayStrategy(%q) = %q, want %q", tc.out, got, tc.want)
		}
	}
}

func TestLastLineWith(t *testing.T) {
	out := "time=x level=INFO msg=registry backend=bbolt\nedge: relay.strategy sockmap: relay: Sockmap: not built yet\n"
	if got, want := lastLineWith(out, "sockmap"), "edge: relay.strategy sockmap: relay: Sockmap: not built yet"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := lastLineWith(out, "splice"); got != "" {
		t.Errorf("a word that is not there: %q", got)
	}
}
