package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
)

// The runner on scenarios that need no namespaces.
func TestRunnerRecordsSamplesAndFailures(t *testing.T) {
	starts := 0
	ok := Scenario{Name: "fake/ok", Area: "l4-bulk-1", Label: "fake", Onramp: true, Setup: "nothing",
		Metrics:     []Metric{{Name: "throughput", Unit: "Gbit/s"}, {Name: "cpu_per_gb", Unit: "CPU-s/GB", Lower: true}, {Name: "missing", Unit: "x"}},
		FreshPerRun: true,
		Start: func(context.Context, *Env) (*Rig, error) {
			starts++
			return &Rig{}, nil
		},
		Run: func(_ context.Context, env *Env, _ *Rig) (Sample, error) {
			env.Logf("a run of %d", starts)
			return Sample{Bytes: 1e9, Values: map[string]float64{"throughput": float64(starts)}}, nil
		}}
	bad := Scenario{Name: "fake/bad", Area: "l4-bulk-1", Label: "fails", Setup: "nothing",
		Metrics: []Metric{{Name: "throughput", Unit: "Gbit/s"}},
		Start:   startNothing,
		Run: func(_ context.Context, env *Env, _ *Rig) (Sample, error) {
			env.Logf("the peer said no")
			return Sample{}, errors.New("peer refused")
		}}
	var out bytes.Buffer
	r := &Runner{Env: &Env{Reps: 3}, Out: &out}
	res := r.RunAll(context.Background(), []Scenario{ok, bad})
	if len(res) != 2 {
		t.Fatalf("%d results", len(res))
	}
	if starts != 3 {
		t.Errorf("FreshPerRun: %d starts; want 3", starts)
	}
	tp := res[0].Metric("throughput")
	if res[0].Error != "" || tp == nil || len(tp.Samples) != 3 || tp.Summary.Median != 2 || tp.Summary.Min != 1 || tp.Summary.Max != 3 {
		t.Errorf("ok scenario: %+v", res[0])
	}
	// No measured process: CPU per GB is not measured, not zero.
	if c := res[0].Metric("cpu_per_gb"); c == nil || c.Summary.N != 0 || !math.IsNaN(float64(c.Samples[0])) {
		t.Errorf("cpu_per_gb without processes: %+v", c)
	}
	if m := res[0].Metric("missing"); m == nil || m.Summary.N != 0 {
		t.Errorf("a metric the run did not report: %+v", m)
	}
	if res[1].Error == "" || !strings.Contains(res[1].Error, "run 1 of 3: peer refused") || !strings.Contains(res[1].LogTail, "the peer said no") {
		t.Errorf("failed scenario: error %q, log %q", res[1].Error, res[1].LogTail)
	}
	for _, want := range []string{"[1/2] fake/ok", "[2/2] fake/bad", "left in the run", "run 3/3: throughput 3.00 Gbit/s", "FAILED", "the peer said no"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("progress lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRunnerRecoversPanic(t *testing.T) {
	s := Scenario{Name: "fake/panic", Area: "l4-bulk-1", Label: "panics", Metrics: []Metric{{Name: "throughput"}},
		Start: startNothing,
		Run:   func(context.Context, *Env, *Rig) (Sample, error) { panic("boom") }}
	res := (&Runner{Env: &Env{Reps: 1}, Out: &bytes.Buffer{}}).RunAll(context.Background(), []Scenario{s})
	if !strings.Contains(res[0].Error, "panic: boom") {
		t.Errorf("error %q", res[0].Error)
	}
}

// An onramp scenario and the peer its goal names run interleaved, with
// both rigs up, in an order that turns around every repetition; a
// scenario without goals runs alone.
func TestRunnerInterleavesGoalGroups(t *testing.T) {
	var order []string
	up := map[string]bool{}
	var bothUp bool
	mk := func(name string, onramp bool, goals []Goal) Scenario {
		return Scenario{Name: name, Area: "l4-bulk-1", Label: name, Onramp: onramp, Setup: "nothing", Goals: goals,
			Metrics: []Metric{{Name: "throughput", Unit: "Gbit/s"}},
			Start: func(context.Context, *Env) (*Rig, error) {
				up[name] = true
				r := &Rig{}
				r.OnClose(func() error { up[name] = false; return nil })
				return r, nil
			},
			Run: func(context.Context, *Env, *Rig) (Sample, error) {
				order = append(order, name)
				if up["o"] && up["p"] {
					bothUp = true
				}
				return Sample{Values: map[string]float64{"throughput": 1}}, nil
			}}
	}
	scenarios := []Scenario{
		mk("o", true, []Goal{{Peer: "p", Metric: "throughput", Op: ">=", Ratio: 0.9}}),
		mk("alone", false, nil),
		mk("p", false, nil),
	}
	var out bytes.Buffer
	res := (&Runner{Env: &Env{Reps: 4}, Out: &out}).RunAll(context.Background(), scenarios)
	if got, want := strings.Join(order, " "), "o p p o o p p o alone alone alone alone"; got != want {
		t.Errorf("run order %q, want %q", got, want)
	}
	if !bothUp {
		t.Error("the group's rigs were not up together")
	}
	if up["o"] || up["p"] || up["alone"] {
		t.Errorf("rigs left up: %v", up)
	}
	if len(res) != 3 || res[0].Name != "o" || res[1].Name != "alone" || res[2].Name != "p" {
		t.Fatalf("results not in the order given: %+v", res)
	}
	for _, r := range []ScenarioResult{res[0], res[2]} {
		if tp := r.Metric("throughput"); r.Error != "" || tp == nil || len(tp.Samples) != 4 {
			t.Errorf("%s: %+v", r.Name, r)
		}
		if !strings.Contains(r.Reproduce, "'^(o|p)$'") {
			t.Errorf("%s: reproduce %q does not run the group", r.Name, r.Reproduce)
		}
	}
	for _, want := range []string{"runs interleaved", "o run 2/4", "p run 2/4", "p done in"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("progress lacks %q:\n%s", want, out.String())
		}
	}
}

// Scenarios that share an Interleave key run interleaved without a goal
// between them; QuickReps sets a smoke run's repetitions; "cpus" is the
// measured processes' CPU time over the run's wall time (NaN without
// processes).
func TestRunnerInterleaveKeyQuickRepsAndCPUs(t *testing.T) {
	var order []string
	mk := func(name, key string) Scenario {
		return Scenario{Name: name, Area: "l4-scale", Label: name, Onramp: true, Setup: "nothing", Interleave: key, QuickReps: 2,
			Metrics: []Metric{{Name: "throughput", Unit: "Gbit/s"}, {Name: "cpus", Unit: "CPUs"}},
			Start:   startNothing,
			Run: func(context.Context, *Env, *Rig) (Sample, error) {
				order = append(order, name)
				return Sample{Values: map[string]float64{"throughput": 1}}, nil
			}}
	}
	scenarios := []Scenario{mk("a1", "a"), mk("b1", "b"), mk("a2", "a"), mk("b2", "b"), mk("alone", "")}
	var out bytes.Buffer
	res := (&Runner{Env: &Env{Reps: 5, Quick: true}, Out: &out}).RunAll(context.Background(), scenarios)
	if got, want := strings.Join(order, " "), "a1 a2 a2 a1 b1 b2 b2 b1 alone alone"; got != want {
		t.Errorf("run order %q, want %q", got, want)
	}
	if c := res[0].Metric("cpus"); c == nil || len(c.Samples) != 2 || !math.IsNaN(float64(c.Samples[0])) {
		t.Errorf("cpus without measured processes: %+v", c)
	}
	order = nil
	(&Runner{Env: &Env{Reps: 3}, Out: &out}).RunAll(context.Background(), scenarios[4:])
	if len(order) != 3 {
		t.Errorf("a full run ran %d times, want Env.Reps 3", len(order))
	}
}

// A scenario whose Start says it is not available here is recorded so,
// with the reason, not as a failure, and the report lists it apart; its
// goals are not measured.
func TestNotAvailable(t *testing.T) {
	mk := func(name string, onramp bool, start func(context.Context, *Env) (*Rig, error)) Scenario {
		return Scenario{Name: name, Area: "l4-bulk-1", Label: name, Onramp: onramp, Setup: "nothing",
			Metrics: []Metric{{Name: "throughput", Unit: "Gbit/s"}, {Name: "cpu_per_gb", Unit: "CPU-s/GB", Lower: true}},
			Start:   start,
			Run: func(context.Context, *Env, *Rig) (Sample, error) {
				return Sample{Values: map[string]float64{"throughput": 10}}, nil
			}}
	}
	sockmap := mk("direct-sockmap/bulk1", true, func(context.Context, *Env) (*Rig, error) {
		return nil, fmt.Errorf("edge direct (sockmap): %w: the edge refused the sockmap strategy: not built yet", ErrNotAvailable)
	})
	splice := mk("direct-splice/bulk1", true, startNothing)
	splice.Goals = []Goal{{Peer: "direct-sockmap/bulk1", Metric: "throughput", Op: ">=", Ratio: 1}}
	sockmap.PeerOf = []string{"direct-splice/bulk1"}
	var out bytes.Buffer
	res := (&Runner{Env: &Env{Reps: 2}, Out: &out}).RunAll(context.Background(), []Scenario{splice, sockmap})
	sm := res[1]
	if sm.Error != "" || !strings.Contains(sm.NotAvailable, "the edge refused the sockmap strategy") || strings.HasPrefix(sm.NotAvailable, "setup:") {
		t.Errorf("sockmap: error %q, not available %q", sm.Error, sm.NotAvailable)
	}
	if tp := res[0].Metric("throughput"); res[0].Error != "" || tp == nil || tp.Summary.N != 2 {
		t.Errorf("splice: %+v", res[0])
	}
	if !strings.Contains(out.String(), "direct-sockmap/bulk1 NOT AVAILABLE here: edge direct (sockmap): not available here: the edge refused") {
		t.Errorf("progress:\n%s", out.String())
	}
	md := Markdown(&Run{Scenarios: res}, Areas, ReportOptions{})
	for _, want := range []string{
		"| direct-splice/bulk1 / direct-sockmap/bulk1, throughput: goal >= 1.00 | not available in this run | — |",
		"| **direct-sockmap/bulk1** | not available | not available |",
		"## Not available in this run",
		"- `direct-sockmap/bulk1`: edge direct (sockmap): not available here: the edge refused the sockmap strategy: not built yet",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "Failed scenarios") || strings.Contains(md, "| direct-splice/bulk1 | direct-sockmap/bulk1 |") {
		t.Errorf("not available reported as failed, or compared:\n%s", md)
	}
	var b bytes.Buffer
	Compare(&b, &Run{Scenarios: res}, &Run{Scenarios: res})
	if !strings.Contains(b.String(), "not available") {
		t.Errorf("compare:\n%s", b.String())
	}
}
