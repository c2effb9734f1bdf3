package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strings"
	"time"
)

// ErrNotAvailable marks a scenario whose system cannot run on this
// machine or build (a kernel feature, a strategy the binary does not
// have): a Start error that wraps it records the scenario as not
// available, with the reason, instead of failed, and the run goes on
// without counting it as a failure.
var ErrNotAvailable = errors.New("not available here")

// Runner runs scenarios one after another and records every sample.
//
// An onramp scenario with goals and the peers its goals name (those of
// them that run) form a group whose runs are interleaved: every rig of the
// group is up, and repetition i runs each member once, in an order that
// turns around every repetition (A B, B A, A B, ...). The figures a goal
// compares then come from the same minutes of the machine, so a slow
// spell (other load, the host) shows on both sides of the ratio instead
// of on one.
type Runner struct {
	Env     *Env
	Out     io.Writer // progress
	Verbose bool      // also stream each scenario's log to Out
}

// RunAll runs the scenarios in order (each goal group where its first
// member stands) and returns their results in the order given. A failed
// scenario is recorded with its error and log tail; the others still run.
func (r *Runner) RunAll(ctx context.Context, scenarios []Scenario) []ScenarioResult {
	total := 0.0
	est := make([]float64, len(scenarios))
	for i, s := range scenarios {
		est[i] = estimate(s, r.Env)
		total += est[i]
	}
	groups := goalGroups(scenarios)
	start := time.Now()
	doneEst := 0.0
	out := make([]ScenarioResult, len(scenarios))
	ran := make([]bool, len(scenarios))
	for i := range scenarios {
		if ran[i] {
			continue
		}
		members := groups[i]
		left := total - doneEst
		if doneEst > 0 {
			// Scale what is left by how the estimates fared so far.
			left *= time.Since(start).Seconds() / doneEst
		}
		for _, m := range members {
			s := scenarios[m]
			fmt.Fprintf(r.Out, "\n[%d/%d] %s: %s (%s)\n", m+1, len(scenarios), s.Name, s.Label, s.Setup)
		}
		if len(members) > 1 {
			fmt.Fprintf(r.Out, "      runs interleaved with each other\n")
		}
		fmt.Fprintf(r.Out, "      about %s left in the run\n", fmtDur(left))
		res := r.runGroup(ctx, scenarios, members)
		for k, m := range members {
			ran[m] = true
			out[m] = res[k]
			doneEst += est[m]
			prefix := ""
			if len(members) > 1 {
				prefix = scenarios[m].Name + " "
			}
			if res[k].NotAvailable != "" {
				fmt.Fprintf(r.Out, "  %sNOT AVAILABLE here: %s\n", prefix, res[k].NotAvailable)
			} else if res[k].Error != "" {
				fmt.Fprintf(r.Out, "  %sFAILED after %.0fs: %s\n  log tail:\n%s\n", prefix, res[k].Seconds, res[k].Error, indent(res[k].LogTail, "    "))
			} else {
				fmt.Fprintf(r.Out, "  %sdone in %.0fs: %s\n", prefix, res[k].Seconds, oneLine(res[k]))
			}
		}
		if ctx.Err() != nil {
			var done []ScenarioResult
			for j := range out {
				if ran[j] {
					done = append(done, out[j])
				}
			}
			return done
		}
	}
	return out
}

// goalGroups returns, for every scenario index, the indexes of its group
// in list order: the scenarios joined by goals (an onramp scenario and the
// peers of its area its goals name) or by a shared Interleave, or the
// scenario alone.
func goalGroups(scenarios []Scenario) [][]int {
	parent := make([]int, len(scenarios))
	for i := range parent {
		parent[i] = i
	}
	find := func(i int) int {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	index := map[string]int{}
	for i, s := range scenarios {
		index[s.Name] = i
	}
	join := func(i, j int) {
		a, b := find(i), find(j)
		if a != b {
			parent[max(a, b)] = min(a, b)
		}
	}
	first := map[string]int{} // Interleave key -> its first scenario
	for i, s := range scenarios {
		for _, g := range s.Goals {
			for _, peer := range g.peers() {
				// A peer of another area (eight streams against one) is
				// measured in the same run, not interleaved: joining the
				// areas would set up both areas' systems at once.
				if j, ok := index[peer]; ok && scenarios[j].Area == s.Area {
					join(i, j)
				}
			}
		}
		if s.Interleave != "" {
			if j, ok := first[s.Interleave]; ok {
				join(i, j)
			} else {
				first[s.Interleave] = i
			}
		}
	}
	groups := make([][]int, len(scenarios))
	byRoot := map[int][]int{}
	for i := range scenarios {
		root := find(i)
		byRoot[root] = append(byRoot[root], i)
	}
	for i := range scenarios {
		groups[i] = byRoot[find(i)]
	}
	return groups
}

func estimate(s Scenario, env *Env) float64 {
	if s.Estimate != nil {
		return s.Estimate(env)
	}
	return 10
}

// runGroup runs the scenarios of members (indexes into scenarios),
// interleaving their repetitions, and returns their results in the order
// of members.
func (r *Runner) runGroup(ctx context.Context, scenarios []Scenario, members []int) []ScenarioResult {
	bound := 0.0
	for _, m := range members {
		// A generous bound: three times the estimate, plus a minute.
		bound += 3*estimate(scenarios[m], r.Env) + 60
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(bound)*time.Second)
	defer cancel()
	var logW io.Writer
	if r.Verbose {
		logW = r.Out
	}
	r.Env.log = newRingLog(400, logW)
	defer func() { r.Env.log = nil }()

	runs := make([]*scenarioRun, len(members))
	reps := 0
	for k, m := range members {
		runs[k] = newScenarioRun(r, scenarios[m])
		reps = max(reps, runs[k].reps)
	}
	defer func() {
		for _, sr := range runs {
			sr.stop()
		}
	}()
	for _, sr := range runs {
		sr.guard(func() {
			if err := sr.start(ctx); err != nil {
				sr.fail(err)
			}
		})
	}
	for rep := 1; rep <= reps && ctx.Err() == nil; rep++ {
		for k := range runs {
			if rep%2 == 0 {
				k = len(runs) - 1 - k
			}
			sr := runs[k]
			if sr.failed || rep > sr.reps {
				continue
			}
			sr.guard(func() { sr.runRep(ctx, rep, len(runs) > 1) })
		}
	}
	var names []string
	for _, sr := range runs {
		names = append(names, regexp.QuoteMeta(sr.s.Name))
	}
	out := make([]ScenarioResult, len(runs))
	for k, sr := range runs {
		sr.stop()
		if !sr.failed && ctx.Err() != nil && sr.done < sr.reps {
			sr.fail(fmt.Errorf("after %d of %d runs: %w", sr.done, sr.reps, ctx.Err()))
		}
		out[k] = sr.result()
		if len(runs) > 1 {
			out[k].Reproduce = fmt.Sprintf("go run ./bench/cmd/bench -only '^(%s)$'", strings.Join(names, "|"))
		}
	}
	return out
}

// scenarioRun is one scenario's rig and samples while its group runs.
type scenarioRun struct {
	r       *Runner
	s       Scenario
	seconds float64 // time spent in this scenario's setup and runs
	rig     *Rig
	reps    int
	done    int
	wants   map[string]bool
	samples map[string][]float64
	machine [2][]JSONNum // the probe's seal and copy figures, one per run
	failed  bool         // failed, or not available: no more runs
	err     string
	unavail string // why the scenario is not available here
	logTail string
	layers  []layerRep // with -profile: each repetition's CPU by layer
}

func newScenarioRun(r *Runner, s Scenario) *scenarioRun {
	sr := &scenarioRun{r: r, s: s, reps: r.Env.Reps, wants: map[string]bool{}, samples: map[string][]float64{}}
	if s.Reps > 0 {
		sr.reps = s.Reps
	}
	if r.Env.Quick && s.QuickReps > 0 {
		sr.reps = s.QuickReps
	}
	for _, m := range s.Metrics {
		sr.wants[m.Name] = true
	}
	return sr
}

// guard runs f, recording a panic as the scenario's failure, and adds
// the time it took to the scenario's.
func (sr *scenarioRun) guard(f func()) {
	t := time.Now()
	defer func() {
		if v := recover(); v != nil {
			sr.fail(fmt.Errorf("panic: %v", v))
		}
		sr.seconds += time.Since(t).Seconds()
	}()
	f()
}

// fail ends the scenario's runs with err. An error that wraps
// ErrNotAvailable before the first run records the scenario as not
// available here instead.
func (sr *scenarioRun) fail(err error) {
	if sr.failed {
		return
	}
	sr.failed = true
	if errors.Is(err, ErrNotAvailable) && sr.done == 0 {
		sr.unavail = strings.TrimPrefix(err.Error(), "setup: ")
	} else {
		sr.err = err.Error()
	}
	sr.logTail = sr.r.Env.log.tail(40)
	sr.stop()
}

func (sr *scenarioRun) start(ctx context.Context) error {
	rig, err := sr.s.Start(ctx, sr.r.Env)
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	sr.rig = rig
	return nil
}

func (sr *scenarioRun) stop() {
	if sr.rig == nil {
		return
	}
	if err := sr.rig.Close(); err != nil {
		sr.r.Env.Logf("close: %v", err)
	}
	sr.rig = nil
}

// runRep runs repetition rep and records its sample; named says to put
// the scenario's name on the progress line.
func (sr *scenarioRun) runRep(ctx context.Context, rep int, named bool) {
	env, s := sr.r.Env, sr.s
	if s.FreshPerRun && rep > 1 {
		sr.stop()
		if err := sr.start(ctx); err != nil {
			sr.fail(fmt.Errorf("run %d of %d: %w", rep, sr.reps, err))
			return
		}
	}
	rig := sr.rig
	env.Current = s.Name
	stopPerf := func() string { return "" }
	if env.ProfileDir != "" {
		// Every repetition is recorded for the CPU by layer (its median
		// over them); the last one's recording is kept for the rest of
		// the summary, and the held streams' Go profiles are of it.
		last := rep == sr.reps
		env.Profiling = last
		stop := env.startPerf(s.Name, rig.Measured, last)
		stopPerf = func() string { env.Profiling = false; return stop() }
	}
	netstat := sr.netstat(rig)
	var probe machineProbe
	probe.sample(env.SUTCPUs)
	cpu0, cpuErr := TreeCPUSeconds(rig.Measured)
	t0 := time.Now()
	smp, err := s.Run(ctx, env, rig)
	wall := time.Since(t0).Seconds()
	perfData := stopPerf()
	cpu1, cpuErr1 := TreeCPUSeconds(rig.Measured)
	probe.sample(env.SUTCPUs)
	machine := probe.result()
	netstat(machine)
	if err != nil {
		if perfData != "" {
			env.perfSummary(s.Name, perfData, sr.layers)
		}
		sr.fail(fmt.Errorf("run %d of %d: %w", rep, sr.reps, err))
		return
	}
	v := smp.Values
	if v == nil {
		v = map[string]float64{}
	}
	cpu := math.NaN()
	if len(rig.Measured) > 0 && cpuErr == nil && cpuErr1 == nil {
		cpu = cpu1 - cpu0 + smp.ExtraCPU
	} else if cpuErr != nil || cpuErr1 != nil {
		env.Logf("cpu: %v", errors.Join(cpuErr, cpuErr1))
	}
	if sr.wants["cpu_per_gb"] {
		v["cpu_per_gb"] = nanIf(smp.Bytes <= 0, cpu/(smp.Bytes/1e9))
	}
	if sr.wants["cpus"] {
		v["cpus"] = nanIf(wall <= 0, cpu/wall) // CPUs busy on average
	}
	if sr.wants["cpu_per_kop"] {
		v["cpu_per_kop"] = nanIf(smp.Ops <= 0, cpu*1e3/(smp.Ops/1e3)) // CPU-ms per 1000 ops
	}
	if sr.wants["rss_peak"] {
		v["rss_peak"] = math.NaN()
		if len(rig.Measured) > 0 {
			var hwm uint64
			for _, pid := range rig.Measured {
				m, err := ReadMem(pid)
				if err != nil {
					env.Logf("memory of %d: %v", pid, err)
					hwm = 0
					break
				}
				hwm += m.VmHWM
			}
			if hwm > 0 {
				v["rss_peak"] = (float64(hwm) + smp.ExtraRSS) / 1024
			}
		}
	}
	if perfData != "" {
		sr.layers = append(sr.layers, env.perfLayers(perfData, v))
		if rep == sr.reps {
			env.perfSummary(s.Name, perfData, sr.layers)
		} else {
			_ = os.Remove(perfData) // its layers are taken
		}
	}
	sr.machine[0] = append(sr.machine[0], JSONNum(machine.Seal))
	sr.machine[1] = append(sr.machine[1], JSONNum(machine.Copy))
	var parts []string
	for _, m := range s.Metrics {
		x, ok := v[m.Name]
		if !ok {
			x = math.NaN()
		}
		sr.samples[m.Name] = append(sr.samples[m.Name], x)
		parts = append(parts, fmt.Sprintf("%s %s", m.Name, fmtVal(x, m.Unit)))
	}
	sr.done++
	name := ""
	if named {
		name = s.Name + " "
	}
	fmt.Fprintf(sr.r.Out, "  %srun %d/%d: %s\n", name, rep, sr.reps, strings.Join(parts, ", "))
}

// netstat reads the network counters of the namespaces of the measured
// processes, when the run asks for it, and returns a func that prints
// what moved since, one line per process (by role, if named).
func (sr *scenarioRun) netstat(rig *Rig) func(ProbeResult) {
	if !sr.r.Env.Netstat {
		return func(ProbeResult) {}
	}
	before := make([]NetCounters, len(rig.Measured))
	for i, pid := range rig.Measured {
		before[i], _ = ReadNetCounters(pid)
	}
	return func(machine ProbeResult) {
		fmt.Fprintf(sr.r.Out, "    sut cpu: %s\n", machine)
		for i, pid := range rig.Measured {
			role := rig.Roles[pid]
			if role == "" {
				role = fmt.Sprint(pid)
			}
			now, err := ReadNetCounters(pid)
			if before[i] == nil && err == nil {
				err = errors.New("no counters from before the run")
			}
			if err != nil {
				fmt.Fprintf(sr.r.Out, "    netstat %s: %v\n", role, err)
				continue
			}
			fmt.Fprintf(sr.r.Out, "    netstat %s: %s\n", role, now.Since(before[i]).Summary())
		}
	}
}

func (sr *scenarioRun) result() ScenarioResult {
	s := sr.s
	res := ScenarioResult{Name: s.Name, Area: s.Area, Label: s.Label, Onramp: s.Onramp,
		PeerOf: s.PeerOf, Goals: s.Goals, Setup: s.Setup,
		Reproduce: fmt.Sprintf("go run ./bench/cmd/bench -only '^%s$'", s.Name),
		Seconds:   sr.seconds, Error: sr.err, NotAvailable: sr.unavail, LogTail: sr.logTail}
	for _, m := range s.Metrics {
		xs := sr.samples[m.Name]
		mr := MetricResult{Name: m.Name, Unit: m.Unit, Lower: m.Lower, Note: m.Note, Summary: Summarize(xs)}
		for _, x := range xs {
			mr.Samples = append(mr.Samples, JSONNum(x))
		}
		res.Metrics = append(res.Metrics, mr)
	}
	if len(sr.machine[1]) > 0 {
		res.Machine = &MachineProbe{SealMBps: sr.machine[0], CopyMBps: sr.machine[1]}
	}
	return res
}
func nanIf(cond bool, v float64) float64 {
	if cond {
		return math.NaN()
	}
	return v
}

func oneLine(res ScenarioResult) string {
	var parts []string
	for _, m := range res.Metrics {
		parts = append(parts, fmt.Sprintf("%s %s", m.Name, fmtSummary(m.Summary, m.Unit)))
	}
	return strings.Join(parts, ", ")
}

func fmtDur(sec float64) string {
	d := time.Duration(sec) * time.Second
	if d < time.Minute {
		return fmt.Sprintf("%ds", int(sec))
	}
	return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
}

func indent(s, prefix string) string {
	if s == "" {
		return prefix + "(no log)"
	}
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}

// fmtVal formats a figure with a precision that suits its size.
func fmtVal(x float64, unit string) string {
	if math.IsNaN(x) {
		return "n/a"
	}
	return fmtNum(x) + " " + unit
}

func fmtNum(x float64) string {
	ax := math.Abs(x)
	switch {
	case math.IsNaN(x):
		return "n/a"
	case ax >= 1000:
		return fmt.Sprintf("%.0f", x)
	case ax >= 100:
		return fmt.Sprintf("%.0f", x)
	case ax >= 10:
		return fmt.Sprintf("%.1f", x)
	case ax >= 1:
		return fmt.Sprintf("%.2f", x)
	case ax == 0:
		return "0"
	default:
		return fmt.Sprintf("%.3g", x)
	}
}

// fmtSummary is "median (min–max) unit".
func fmtSummary(s Summary, unit string) string {
	if s.N == 0 {
		return "n/a"
	}
	if s.N == 1 || s.Min == s.Max {
		return fmtNum(s.Median) + " " + unit
	}
	return fmt.Sprintf("%s (%s–%s) %s", fmtNum(s.Median), fmtNum(s.Min), fmtNum(s.Max), unit)
}
