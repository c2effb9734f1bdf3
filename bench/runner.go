package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// Runner runs scenarios one after another and records every sample.
type Runner struct {
	Env     *Env
	Out     io.Writer // progress
	Verbose bool      // also stream each scenario's log to Out
}

// RunAll runs the scenarios in order and returns their results. A failed
// scenario is recorded with its error and log tail; the others still run.
func (r *Runner) RunAll(ctx context.Context, scenarios []Scenario) []ScenarioResult {
	total := 0.0
	est := make([]float64, len(scenarios))
	for i, s := range scenarios {
		est[i] = estimate(s, r.Env)
		total += est[i]
	}
	start := time.Now()
	doneEst := 0.0
	var out []ScenarioResult
	for i, s := range scenarios {
		left := total - doneEst
		if doneEst > 0 {
			// Scale what is left by how the estimates fared so far.
			left *= time.Since(start).Seconds() / doneEst
		}
		fmt.Fprintf(r.Out, "\n[%d/%d] %s: %s (%s)\n      about %s left in the run\n",
			i+1, len(scenarios), s.Name, s.Label, s.Setup, fmtDur(left))
		res := r.runOne(ctx, s)
		doneEst += est[i]
		if res.Error != "" {
			fmt.Fprintf(r.Out, "  FAILED after %.0fs: %s\n  log tail:\n%s\n", res.Seconds, res.Error, indent(res.LogTail, "    "))
		} else {
			fmt.Fprintf(r.Out, "  done in %.0fs: %s\n", res.Seconds, oneLine(res))
		}
		out = append(out, res)
		if ctx.Err() != nil {
			break
		}
	}
	return out
}

func estimate(s Scenario, env *Env) float64 {
	if s.Estimate != nil {
		return s.Estimate(env)
	}
	return 10
}

func (r *Runner) runOne(ctx context.Context, s Scenario) (res ScenarioResult) {
	t0 := time.Now()
	res = ScenarioResult{Name: s.Name, Area: s.Area, Label: s.Label, Onramp: s.Onramp,
		PeerOf: s.PeerOf, Goals: s.Goals, Setup: s.Setup,
		Reproduce: fmt.Sprintf("go run ./bench/cmd/bench -only '^%s$'", s.Name)}
	var logW io.Writer
	if r.Verbose {
		logW = r.Out
	}
	r.Env.log = newRingLog(400, logW)
	defer func() { r.Env.log = nil }()
	samples := map[string][]float64{}
	fail := func(err error) {
		res.Error = err.Error()
		res.LogTail = r.Env.log.tail(40)
	}
	defer func() {
		if v := recover(); v != nil {
			fail(fmt.Errorf("panic: %v", v))
		}
		res.Seconds = time.Since(t0).Seconds()
		for _, m := range s.Metrics {
			xs := samples[m.Name]
			mr := MetricResult{Name: m.Name, Unit: m.Unit, Lower: m.Lower, Note: m.Note, Summary: Summarize(xs)}
			for _, x := range xs {
				mr.Samples = append(mr.Samples, JSONNum(x))
			}
			res.Metrics = append(res.Metrics, mr)
		}
	}()

	// A generous bound: three times the estimate, plus a minute.
	ctx, cancel := context.WithTimeout(ctx, time.Duration(3*estimate(s, r.Env)+60)*time.Second)
	defer cancel()
	var rig *Rig
	start := func() error {
		var err error
		if rig, err = s.Start(ctx, r.Env); err != nil {
			rig = nil
			return fmt.Errorf("setup: %w", err)
		}
		return nil
	}
	stop := func() {
		if rig == nil {
			return
		}
		if err := rig.Close(); err != nil {
			r.Env.Logf("close: %v", err)
		}
		rig = nil
	}
	defer stop()
	if err := start(); err != nil {
		fail(err)
		return res
	}
	reps := r.Env.Reps
	if s.Reps > 0 {
		reps = s.Reps
	}
	wants := map[string]bool{}
	for _, m := range s.Metrics {
		wants[m.Name] = true
	}
	for rep := 1; rep <= reps; rep++ {
		if s.FreshPerRun && rep > 1 {
			stop()
			if err := start(); err != nil {
				fail(fmt.Errorf("run %d of %d: %w", rep, reps, err))
				return res
			}
		}
		cpu0, cpuErr := TreeCPUSeconds(rig.Measured)
		smp, err := s.Run(ctx, r.Env, rig)
		if err != nil {
			fail(fmt.Errorf("run %d of %d: %w", rep, reps, err))
			return res
		}
		cpu1, cpuErr1 := TreeCPUSeconds(rig.Measured)
		v := smp.Values
		if v == nil {
			v = map[string]float64{}
		}
		cpu := math.NaN()
		if len(rig.Measured) > 0 && cpuErr == nil && cpuErr1 == nil {
			cpu = cpu1 - cpu0 + smp.ExtraCPU
		} else if cpuErr != nil || cpuErr1 != nil {
			r.Env.Logf("cpu: %v", errors.Join(cpuErr, cpuErr1))
		}
		if wants["cpu_per_gb"] {
			v["cpu_per_gb"] = nanIf(smp.Bytes <= 0, cpu/(smp.Bytes/1e9))
		}
		if wants["cpu_per_kop"] {
			v["cpu_per_kop"] = nanIf(smp.Ops <= 0, cpu*1e3/(smp.Ops/1e3)) // CPU-ms per 1000 ops
		}
		if wants["rss_peak"] {
			v["rss_peak"] = math.NaN()
			if len(rig.Measured) > 0 {
				var hwm uint64
				for _, pid := range rig.Measured {
					m, err := ReadMem(pid)
					if err != nil {
						r.Env.Logf("memory of %d: %v", pid, err)
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
		var parts []string
		for _, m := range s.Metrics {
			x, ok := v[m.Name]
			if !ok {
				x = math.NaN()
			}
			samples[m.Name] = append(samples[m.Name], x)
			parts = append(parts, fmt.Sprintf("%s %s", m.Name, fmtVal(x, m.Unit)))
		}
		fmt.Fprintf(r.Out, "  run %d/%d: %s\n", rep, reps, strings.Join(parts, ", "))
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
