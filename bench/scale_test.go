package bench

import (
	"math"
	"slices"
	"testing"
)

// TestScaleScenarios: the grid is registered and valid; the baseline is
// the reference of every other cell of its protocol, one connection the
// reference of four at the same streams; 8 streams over 4 connections
// carries the two goals, and is the reference of the same kept on one;
// each protocol's cells form one interleaved group.
func TestScaleScenarios(t *testing.T) {
	all := Scenarios()
	if err := Validate(all, Areas); err != nil {
		t.Fatal(err)
	}
	byName := map[string]Scenario{}
	var names []string
	for _, s := range all {
		if s.Area == scaleArea.Key {
			byName[s.Name] = s
			names = append(names, s.Name)
		}
	}
	want := []string{
		"l4-scale/quic-s1-c1", "l4-scale/quic-s1-c4", "l4-scale/quic-s8-c1", "l4-scale/quic-s8-c4",
		"l4-scale/quic-s16-c1", "l4-scale/quic-s16-c4", "l4-scale/quic-s8-c4-one",
		"l4-scale/http2-s1-c1", "l4-scale/http2-s1-c4", "l4-scale/http2-s8-c1", "l4-scale/http2-s8-c4", "l4-scale/http2-s8-c4-one",
	}
	if !slices.Equal(names, want) {
		t.Fatalf("scenarios %v, want %v", names, want)
	}
	peers := map[string][]string{
		"l4-scale/quic-s1-c1":  {"l4-scale/quic-s1-c4", "l4-scale/quic-s8-c1", "l4-scale/quic-s8-c4", "l4-scale/quic-s16-c1", "l4-scale/quic-s16-c4", "l4-scale/quic-s8-c4-one"},
		"l4-scale/quic-s8-c1":  {"l4-scale/quic-s8-c4", "l4-scale/quic-s8-c4-one"},
		"l4-scale/quic-s8-c4":  {"l4-scale/quic-s8-c4-one"},
		"l4-scale/quic-s16-c1": {"l4-scale/quic-s16-c4"},
		"l4-scale/http2-s1-c1": {"l4-scale/http2-s1-c4", "l4-scale/http2-s8-c1", "l4-scale/http2-s8-c4", "l4-scale/http2-s8-c4-one"},
		"l4-scale/http2-s8-c1": {"l4-scale/http2-s8-c4", "l4-scale/http2-s8-c4-one"},
		"l4-scale/http2-s8-c4": {"l4-scale/http2-s8-c4-one"},
	}
	for _, n := range names {
		s := byName[n]
		if !slices.Equal(s.PeerOf, peers[n]) {
			t.Errorf("%s: reference of %v, want %v", n, s.PeerOf, peers[n])
		}
		if base := n == "l4-scale/quic-s1-c1" || n == "l4-scale/http2-s1-c1"; s.Onramp == base {
			t.Errorf("%s: onramp %v", n, s.Onramp)
		}
		if s.QuickReps != 1 {
			t.Errorf("%s: %d runs in a smoke run, want 1", n, s.QuickReps)
		}
	}
	for _, p := range []string{"quic", "http2"} {
		g := byName["l4-scale/"+p+"-s8-c4"].Goals
		wantGoals := []Goal{
			{Peer: "l4-scale/" + p + "-s8-c1", Metric: "throughput", Op: ">=", Ratio: 1},
			{Peer: "l4-scale/" + p + "-s1-c1", Metric: "cpu_per_gb", Op: "<=", Ratio: scaleMaxCPUGrowth},
		}
		if !slices.Equal(g, wantGoals) {
			t.Errorf("%s goals %+v, want %+v", p, g, wantGoals)
		}
	}
	n := 0
	for _, s := range byName {
		n += len(s.Goals)
	}
	if n != 4 {
		t.Errorf("%d goals in the area, want 4", n)
	}

	var grid []Scenario
	for _, n := range names {
		grid = append(grid, byName[n])
	}
	groups := goalGroups(grid)
	if !slices.Equal(groups[0], []int{0, 1, 2, 3, 4, 5, 6}) || !slices.Equal(groups[11], []int{7, 8, 9, 10, 11}) {
		t.Errorf("groups %v", groups)
	}
}

func TestScaleLabels(t *testing.T) {
	for c, want := range map[scaleCell]string{
		{Proto: "quic", Streams: 1, Conns: 1}:            "QUIC: 1 stream, 1 connection (baseline)",
		{Proto: "quic", Streams: 8, Conns: 4}:            "QUIC: 8 streams, 4 connections",
		{Proto: "http2", Streams: 1, Conns: 4}:           "HTTP/2: 1 stream, 4 connections",
		{Proto: "quic", Streams: 8, Conns: 4, One: true}: "QUIC: 8 streams, 4 connections, kept on one",
	} {
		if got := c.label(); got != want {
			t.Errorf("%+v: %q, want %q", c, got, want)
		}
	}
}

func TestSlowestShare(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{5}, 1},
		{[]float64{4, 4, 4, 4}, 1},
		{[]float64{1, 3}, 0.5},
		{[]float64{0, 2}, 0},
		{nil, math.NaN()},
		{[]float64{0, 0}, math.NaN()},
	} {
		got := SlowestShare(tc.in)
		if got != tc.want && !(math.IsNaN(got) && math.IsNaN(tc.want)) {
			t.Errorf("SlowestShare(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestBusyCPUs(t *testing.T) {
	a := cpuSet{n: 2, ticks: CPUTicks{Busy: 100, Total: 1000}}
	b := cpuSet{n: 2, ticks: CPUTicks{Busy: 250, Total: 1200}} // 200 ticks of 2 CPUs: 1 s; 150 busy
	if got := b.busyCPUs(a); math.Abs(got-1.5) > 1e-9 {
		t.Errorf("busyCPUs = %v, want 1.5", got)
	}
	if got := a.busyCPUs(a); !math.IsNaN(got) {
		t.Errorf("no time passed: %v", got)
	}
	if _, err := readBusy(""); err == nil {
		t.Error("no CPU list: no error")
	}
}
