package bench

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"strings"

	"github.com/onramp-net/onramp/testnet"
)

// Metric declares a figure a scenario reports.
type Metric struct {
	Name  string // key in the results, e.g. "throughput"
	Unit  string // e.g. "Gbit/s"
	Lower bool   // lower is better (latency, CPU, memory)
	Note  string // how it is measured, when not obvious
}

// Goal is a target ratio between an onramp scenario and one of its peers:
// median(onramp) / median(peer) compared with Ratio by Op (">=" or "<=").
type Goal struct {
	Peer   string  `json:"peer"`
	Metric string  `json:"metric"`
	Op     string  `json:"op"`
	Ratio  float64 `json:"ratio"`
	// Plus, if set, is a second peer whose figure adds to Peer's: the
	// goal is a ratio to the sum (the tunnel's CPU per GB against the
	// raw transport's ends plus HAProxy's relay of the two TCP legs).
	Plus string `json:"plus,omitempty"`
	// Limit, if set (and no peer), makes the goal absolute: the
	// scenario's own figure, in the metric's unit, Op Limit.
	Limit float64 `json:"limit,omitempty"`
}

// Absolute reports whether the goal is a figure, not a ratio to a peer.
func (g Goal) Absolute() bool { return g.Limit != 0 }

// peers are the scenarios the goal compares with.
func (g Goal) peers() []string {
	var p []string
	for _, n := range []string{g.Peer, g.Plus} {
		if n != "" {
			p = append(p, n)
		}
	}
	return p
}

// Met reports whether ratio (an absolute goal: the figure) meets the goal.
func (g Goal) Met(ratio float64) bool {
	if math.IsNaN(ratio) {
		return false
	}
	want := g.Ratio
	if g.Absolute() {
		want = g.Limit
	}
	if g.Op == "<=" {
		return ratio <= want
	}
	return ratio >= want
}

func (g Goal) String() string {
	if g.Absolute() {
		return fmt.Sprintf("%s %g", g.Op, g.Limit)
	}
	return fmt.Sprintf("%s %.2f", g.Op, g.Ratio)
}

// Scenario is one measurement: a setup (a topology with the system under
// test or a peer in it) and a run repeated Env.Reps times. Scenarios are
// plain values; [Scenarios] lists them.
type Scenario struct {
	Name   string // unique; -only matches it, e.g. "tunnel-quic/bulk1"
	Area   string // an [Area] key
	Label  string // what runs, for tables: "onramp tunnel (QUIC)"
	Onramp bool   // the system under test; otherwise a peer or ceiling
	// PeerOf are the onramp scenarios this one is compared with: a peer's,
	// or an onramp scenario's that is the reference of another (a cell of
	// a grid against its neighbour).
	PeerOf []string
	Goals  []Goal // for onramp scenarios: target ratios to peers
	// Setup says in words what runs where (for BENCHMARKS.md).
	Setup   string
	Metrics []Metric
	// Reps overrides Env.Reps (the Go microbenchmarks repeat inside).
	Reps int
	// QuickReps overrides the repetitions of a quick (smoke) run.
	QuickReps int
	// Interleave joins the scenarios that share it into one group that
	// runs interleaved, as the scenarios of a goal do (a grid measured
	// against its own cells).
	Interleave string
	// FreshPerRun starts a new world for every run (memory figures that
	// the previous run would otherwise inflate).
	FreshPerRun bool
	// Estimate is the expected wall time of setup plus all runs, for
	// the progress line's time left.
	Estimate func(env *Env) float64
	// Start brings the scenario's world up. Close the returned Rig.
	Start func(ctx context.Context, env *Env) (*Rig, error)
	// Run is one repetition. CPU and memory of rig.Measured are read by
	// the runner around it.
	Run func(ctx context.Context, env *Env, rig *Rig) (Sample, error)
}

// Sample is the outcome of one repetition: metric values by name, plus
// what the runner needs to turn the CPU time of the measured processes into
// per-unit figures.
type Sample struct {
	Values map[string]float64
	Bytes  float64 // payload bytes moved: gives "cpu_per_gb"
	Ops    float64 // operations (echoes, connections): gives "cpu_per_kop"
	// ExtraCPU is CPU seconds of measured processes that started and
	// exited within the run (from their rusage); ExtraRSS their peak
	// resident memory in KiB (ru_maxrss), added to rss_peak.
	ExtraCPU float64
	ExtraRSS float64
}

// Rig is a scenario's running world.
type Rig struct {
	Net *testnet.Net
	// Measured are the PIDs of the processes under test: their CPU time
	// (with their descendants') and memory are recorded.
	Measured []int
	// Roles names some measured PIDs ("edge", "connector") for
	// per-process figures.
	Roles map[int]string
	// Addr of the service the load generators target, by role ("bulk": an
	// iperf3 server, "echo": a TCP echo), as seen from the client node.
	Addr   map[string]string
	Client *testnet.Node
	// Pprof, by role, are where onramp processes serve Go's profiler when
	// the run is profiled.
	Pprof map[string]PprofTarget
	// State is scenario-specific.
	State  any
	closes []func() error
}

// OnClose registers f to run at Close, in reverse order.
func (r *Rig) OnClose(f func() error) { r.closes = append(r.closes, f) }

// Close stops everything the rig started.
func (r *Rig) Close() error {
	var first error
	for i := len(r.closes) - 1; i >= 0; i-- {
		if err := r.closes[i](); err != nil && first == nil {
			first = err
		}
	}
	r.closes = nil
	return first
}

// Area groups scenarios that answer one question in one table.
type Area struct {
	Key   string
	Title string
	// Key metrics: compared between onramp and peers, charted (the first).
	Compare []string
	Intro   string
	// Only is the -only pattern that reruns the area.
	Only string
}

// Select returns the scenarios whose names match re (all if re is nil).
func Select(all []Scenario, re *regexp.Regexp) []Scenario {
	var out []Scenario
	for _, s := range all {
		if re == nil || re.MatchString(s.Name) {
			out = append(out, s)
		}
	}
	return out
}

// Validate checks that names are unique and well-formed, areas exist, and
// that peers and goals name scenarios that exist.
func Validate(all []Scenario, areas []Area) error {
	names := map[string]*Scenario{}
	areaKeys := map[string]bool{}
	for _, a := range areas {
		areaKeys[a.Key] = true
	}
	for i := range all {
		s := &all[i]
		if s.Name == "" || strings.ContainsAny(s.Name, " \t'\"") {
			return fmt.Errorf("scenario %q: bad name", s.Name)
		}
		if names[s.Name] != nil {
			return fmt.Errorf("scenario %q defined twice", s.Name)
		}
		names[s.Name] = s
		if !areaKeys[s.Area] {
			return fmt.Errorf("scenario %s: unknown area %q", s.Name, s.Area)
		}
		if s.Start == nil || s.Run == nil || len(s.Metrics) == 0 {
			return fmt.Errorf("scenario %s: needs Start, Run and Metrics", s.Name)
		}
	}
	for _, s := range all {
		for _, p := range s.PeerOf {
			o := names[p]
			if o == nil || !o.Onramp {
				return fmt.Errorf("scenario %s: peer of %q, which is not an onramp scenario", s.Name, p)
			}
			if o.Area != s.Area {
				return fmt.Errorf("scenario %s: peer of %s in another area", s.Name, p)
			}
		}
		for _, g := range s.Goals {
			if g.Absolute() {
				if g.Peer != "" || g.Plus != "" {
					return fmt.Errorf("scenario %s: goal on %s with a limit and a peer", s.Name, g.Metric)
				}
				continue
			}
			for _, p := range g.peers() {
				if names[p] == nil {
					return fmt.Errorf("scenario %s: goal against unknown peer %q", s.Name, p)
				}
			}
		}
	}
	return nil
}
