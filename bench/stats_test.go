package bench

import (
	"encoding/json"
	"math"
	"testing"
)

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		in               []float64
		n                int
		median, min, max float64
	}{
		{[]float64{3, 1, 2}, 3, 2, 1, 3},
		{[]float64{4, 1, 3, 2}, 4, 2.5, 1, 4},
		{[]float64{5}, 1, 5, 5, 5},
		{[]float64{math.NaN(), 7, 1}, 2, 4, 1, 7},
	} {
		s := Summarize(tc.in)
		if s.N != tc.n || s.Median != tc.median || s.Min != tc.min || s.Max != tc.max {
			t.Errorf("Summarize(%v) = %+v; want n=%d median=%g min=%g max=%g", tc.in, s, tc.n, tc.median, tc.min, tc.max)
		}
	}
	if s := Summarize(nil); s.N != 0 || !math.IsNaN(s.Median) {
		t.Errorf("Summarize(nil) = %+v; want N 0 and NaN", s)
	}
	if s := Summarize([]float64{math.NaN()}); s.N != 0 {
		t.Errorf("all-NaN: %+v", s)
	}
}

func TestSummarizeDoesNotSortInput(t *testing.T) {
	in := []float64{3, 1, 2}
	Summarize(in)
	if in[0] != 3 || in[1] != 1 {
		t.Errorf("input reordered: %v", in)
	}
}

func TestPercentile(t *testing.T) {
	var s []float64
	for i := 1; i <= 100; i++ {
		s = append(s, float64(i))
	}
	for _, tc := range []struct{ p, want float64 }{
		{0, 1}, {1, 1}, {50, 50}, {90, 90}, {99, 99}, {99.5, 100}, {100, 100}, {-3, 1}, {200, 100},
	} {
		if got := Percentile(s, tc.p); got != tc.want {
			t.Errorf("Percentile(1..100, %g) = %g; want %g", tc.p, got, tc.want)
		}
	}
	// Nearest rank on a small set: p50 of 4 values is the 2nd.
	if got := Percentile([]float64{10, 20, 30, 40}, 50); got != 20 {
		t.Errorf("p50 of 4 = %g; want 20", got)
	}
	if got := Percentile([]float64{10, 20, 30, 40}, 99); got != 40 {
		t.Errorf("p99 of 4 = %g; want 40", got)
	}
	if !math.IsNaN(Percentile(nil, 50)) {
		t.Error("Percentile(nil) is not NaN")
	}
}

func TestOverlap(t *testing.T) {
	a := Summary{N: 3, Median: 2, Min: 1, Max: 3}
	for _, tc := range []struct {
		b    Summary
		want bool
	}{
		{Summary{N: 3, Median: 3.5, Min: 3, Max: 4}, true}, // touching
		{Summary{N: 3, Median: 5, Min: 4, Max: 6}, false},
		{Summary{N: 3, Median: 0.5, Min: 0, Max: 0.9}, false},
		{Summary{N: 3, Median: 2, Min: 0, Max: 10}, true}, // contains
		{Summary{}, false},
	} {
		if got := Overlap(a, tc.b); got != tc.want {
			t.Errorf("Overlap(%+v, %+v) = %v", a, tc.b, got)
		}
	}
}

func TestSummaryJSONNaN(t *testing.T) {
	b, err := json.Marshal(Summarize(nil))
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"n":0,"median":null,"min":null,"max":null}` {
		t.Errorf("got %s", b)
	}
	var s Summary
	if err := json.Unmarshal(b, &s); err != nil || !math.IsNaN(s.Median) {
		t.Errorf("round trip: %+v %v", s, err)
	}
	b, _ = json.Marshal([]JSONNum{1.5, JSONNum(math.NaN())})
	if string(b) != `[1.5,null]` {
		t.Errorf("JSONNum: %s", b)
	}
}

func TestRatioAndGoal(t *testing.T) {
	o := Summary{N: 3, Median: 9, Min: 8, Max: 10}
	p := Summary{N: 3, Median: 10, Min: 10, Max: 10}
	r, lo, hi := Ratio(o, p)
	if r != 0.9 || lo != 0.8 || hi != 1 {
		t.Errorf("Ratio = %g %g %g", r, lo, hi)
	}
	g := Goal{Op: ">=", Ratio: 0.90}
	if !g.Met(r) || g.Met(0.89) || g.Met(math.NaN()) {
		t.Errorf("goal >= 0.90 wrong")
	}
	if !(Goal{Op: "<=", Ratio: 1.2}).Met(1.1) {
		t.Errorf("goal <= 1.2 wrong")
	}
	if r, _, _ := Ratio(o, Summary{}); !math.IsNaN(r) {
		t.Errorf("ratio to nothing: %g", r)
	}
}

func TestVerdict(t *testing.T) {
	old := Summary{N: 3, Median: 10, Min: 9, Max: 11}
	if v := Verdict(old, Summary{N: 3, Median: 10.5, Min: 10, Max: 12}, false); v != "~ (ranges overlap: noise)" {
		t.Errorf("overlap: %s", v)
	}
	if v := Verdict(old, Summary{N: 3, Median: 13, Min: 12, Max: 14}, false); v != "better" {
		t.Errorf("higher throughput: %s", v)
	}
	if v := Verdict(old, Summary{N: 3, Median: 13, Min: 12, Max: 14}, true); v != "WORSE" {
		t.Errorf("higher latency: %s", v)
	}
	if v := Verdict(Summary{N: 3, Median: 100, Min: 100, Max: 100}, Summary{N: 3, Median: 101, Min: 101, Max: 101}, true); v != "~ (under 2%)" {
		t.Errorf("1%% on steady figures: %s", v)
	}
}
