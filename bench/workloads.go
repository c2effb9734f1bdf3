package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/onramp-net/onramp/bench/internal/rawbulk"
)

// The workloads are generic over rigs: each targets rig.Addr from
// rig.Client.

// output runs cmd and returns its stdout; the error carries stderr.
func output(env *Env, cmd *exec.Cmd) ([]byte, error) {
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	env.Logf("$ %s\n%s%s", strings.Join(cmd.Args, " "), stderr.String(), truncateLog(out))
	if err != nil {
		return out, fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args[4:], " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func truncateLog(b []byte) string {
	if len(b) > 2000 {
		return string(b[:2000]) + "...\n"
	}
	return string(b)
}

// iperfBulk runs iperf3 for BulkSeconds from the client to the bulk
// address with streams parallel streams (iperf3 -P).
func iperfBulk(ctx context.Context, env *Env, rig *Rig, streams int) (IperfResult, error) {
	host, port, _ := strings.Cut(rig.Addr["bulk"], ":")
	args := []string{"-c", host, "-p", port, "-t", fmt.Sprint(env.BulkSeconds), "-J", "-P", fmt.Sprint(streams)}
	out, err := output(env, rig.Client.Command(ctx, "iperf3", args...))
	if err != nil {
		return IperfResult{}, err
	}
	return ParseIperf3(out)
}

// runBulk is iperf3 from the client to the bulk address with streams
// parallel streams (iperf3 -P).
func runBulk(streams int) func(ctx context.Context, env *Env, rig *Rig) (Sample, error) {
	return func(ctx context.Context, env *Env, rig *Rig) (Sample, error) {
		res, err := iperfBulk(ctx, env, rig, streams)
		if err != nil {
			return Sample{}, err
		}
		return Sample{Bytes: res.Bytes, Values: map[string]float64{
			"throughput":  res.BitsPerSecond / 1e9,
			"retransmits": float64(res.Retransmits),
		}}, nil
	}
}

// runRaw runs the sender of a raw transport from the client node for
// BulkSeconds; like iperf3 without -O, the figure covers the whole transfer.
func runRaw(bin string) func(ctx context.Context, env *Env, rig *Rig) (Sample, error) {
	return func(ctx context.Context, env *Env, rig *Rig) (Sample, error) {
		d := time.Duration(env.BulkSeconds) * time.Second
		cmd := env.SUTCommand(ctx, rig.Client, env.Bins[bin], "send", "-addr", rig.Addr["raw"], "-d", d.String())
		out, err := output(env, cmd)
		if err != nil {
			return Sample{}, err
		}
		var rep rawbulk.Report
		if err := json.Unmarshal(out, &rep); err != nil {
			return Sample{}, fmt.Errorf("%s report: %w", bin, err)
		}
		b, s := float64(rep.Bytes), rep.Seconds
		if s <= 0 {
			return Sample{}, fmt.Errorf("%s: receiver counted nothing", bin)
		}
		return Sample{Bytes: float64(rep.Bytes), ExtraCPU: cpuOf(cmd), ExtraRSS: maxRSSOf(cmd), Values: map[string]float64{
			"throughput": b * 8 / s / 1e9,
		}}, nil
	}
}

// latencies turns nanoseconds into sorted microseconds.
func latencies(ns []int64) []float64 {
	us := make([]float64, len(ns))
	for i, v := range ns {
		us[i] = float64(v) / 1e3
	}
	slices.Sort(us)
	return us
}

// runEcho is Echoes sequential 64-byte echoes on one connection.
func runEcho(ctx context.Context, env *Env, rig *Rig) (Sample, error) {
	out, err := output(env, rig.Client.Command(ctx, env.Bins["loadgen"], "echo", "-addr", rig.Addr["echo"],
		"-n", fmt.Sprint(env.Echoes), "-size", "64"))
	if err != nil {
		return Sample{}, err
	}
	var rep struct {
		Echoes    int     `json:"echoes"`
		Latencies []int64 `json:"latencies_ns"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return Sample{}, fmt.Errorf("loadgen echo: %w", err)
	}
	l := latencies(rep.Latencies)
	return Sample{Ops: float64(rep.Echoes), Values: map[string]float64{
		"p50": Percentile(l, 50), "p90": Percentile(l, 90), "p99": Percentile(l, 99), "max": Percentile(l, 100),
	}}, nil
}

// runConnRate opens new connections for ConnSeconds with ConnWorkers
// dialers, each doing a 1-byte echo.
func runConnRate(ctx context.Context, env *Env, rig *Rig) (Sample, error) {
	out, err := output(env, rig.Client.Command(ctx, env.Bins["loadgen"], "connrate", "-addr", rig.Addr["echo"],
		"-d", fmt.Sprintf("%gs", env.ConnSeconds), "-c", fmt.Sprint(env.ConnWorkers)))
	if err != nil {
		return Sample{}, err
	}
	var rep struct {
		Conns     int64   `json:"conns"`
		Errors    int64   `json:"errors"`
		FirstErr  string  `json:"first_error"`
		Seconds   float64 `json:"seconds"`
		Latencies []int64 `json:"latencies_ns"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return Sample{}, fmt.Errorf("loadgen connrate: %w", err)
	}
	if rep.Errors*100 > rep.Conns {
		return Sample{}, fmt.Errorf("%d of %d connections failed (over 1%%): %s", rep.Errors, rep.Conns+rep.Errors, rep.FirstErr)
	}
	l := latencies(rep.Latencies)
	return Sample{Ops: float64(rep.Conns), Values: map[string]float64{
		"rate": float64(rep.Conns) / rep.Seconds, "p50": Percentile(l, 50), "p99": Percentile(l, 99),
		"errors": float64(rep.Errors),
	}}, nil
}

// runStreams holds Streams connections open (streamsActive of them
// echoing continuously, the rest idle) and samples the resident memory of
// the measured processes meanwhile.
// streamsActive is how many held streams keep echoing: 100, or a tenth
// of fewer than 1000, so that the figure per stream is an idle one's.
func streamsActive(env *Env) int { return max(1, min(100, env.Streams/10)) }

func runStreams(ctx context.Context, env *Env, rig *Rig) (Sample, error) {
	// peaks holds the highest VmRSS (KiB) seen per role.
	peaks := map[string]float64{}
	rss := func() (float64, error) {
		var sum uint64
		for _, pid := range rig.Measured {
			m, err := ReadMem(pid)
			if err != nil {
				return 0, err
			}
			sum += m.VmRSS
			if role := rig.Roles[pid]; role != "" {
				peaks[role] = max(peaks[role], float64(m.VmRSS))
			}
		}
		return float64(sum), nil // KiB
	}
	base, err := rss()
	if err != nil {
		return Sample{}, err
	}
	clear(peaks)
	var memBefore map[string]map[string]float64
	if env.Profiling && len(rig.Pprof) > 0 {
		memBefore = env.memstatsBefore(ctx, rig)
	}
	hold := 5 * time.Second
	if env.Quick {
		hold = 2 * time.Second
	}
	cmd := rig.Client.Command(ctx, env.Bins["loadgen"], "streams", "-addr", rig.Addr["echo"],
		"-n", fmt.Sprint(env.Streams), "-active", fmt.Sprint(streamsActive(env)), "-hold", hold.String())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return Sample{}, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	peak := base
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	// Profiled: the Go profiles are taken halfway through the hold (the
	// streams open within the first second).
	var snapshot <-chan time.Time
	if env.Profiling && len(rig.Pprof) > 0 {
		snapshot = time.After(time.Second + hold/2)
	}
	for waiting := true; waiting; {
		select {
		case <-snapshot:
			env.pprofSnapshot(ctx, env.Current, rig, memBefore)
		case err = <-done:
			waiting = false
		case <-tick.C:
			if v, rerr := rss(); rerr == nil && v > peak {
				peak = v
			}
		}
	}
	env.Logf("$ %s\n%s%s", strings.Join(cmd.Args, " "), stderr.String(), stdout.String())
	if err != nil {
		return Sample{}, fmt.Errorf("loadgen streams: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	var rep struct {
		Opened       int     `json:"opened"`
		OpenSeconds  float64 `json:"open_seconds"`
		ActiveEchoes int64   `json:"active_echoes"`
		Errors       int64   `json:"errors"`
		FirstErr     string  `json:"first_error"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		return Sample{}, fmt.Errorf("loadgen streams: %w", err)
	}
	if rep.Errors > 0 {
		return Sample{}, fmt.Errorf("%d stream errors: %s", rep.Errors, rep.FirstErr)
	}
	v := map[string]float64{
		"open_time":  rep.OpenSeconds * 1e3,
		"rss_held":   math.NaN(),
		"per_stream": math.NaN(),
	}
	if len(rig.Measured) > 0 {
		v["rss_held"] = peak / 1024
		v["per_stream"] = (peak - base) / float64(rep.Opened)
	}
	for _, role := range []string{"edge", "connector"} {
		v[role+"_rss_held"] = math.NaN()
		if p, ok := peaks[role]; ok {
			v[role+"_rss_held"] = p / 1024
		}
	}
	return Sample{Ops: float64(rep.ActiveEchoes), Values: v}, nil
}

// runGoBench runs the Go microbenchmarks of the dataplane on every CPU
// and keeps their raw output for benchstat.
func runGoBench(ctx context.Context, env *Env, rig *Rig) (Sample, error) {
	// The benchmarks measured by their own scenarios (round trips, the
	// connector leg against iperf3) are skipped here.
	args := append([]string{"test", "-run", "^$", "-bench", ".", "-skip", "^(BenchmarkFirstByte|BenchmarkConnectorLeg)$", "-benchmem"}, env.GoBenchArgs...)
	args = append(args, "./dataplane/...", "./l4proxy/...", "./l3router/...")
	name, full := "go", args
	if env.AllCPUs != "" {
		name, full = "taskset", append([]string{"-c", env.AllCPUs, "go"}, args...)
	}
	cmd := exec.CommandContext(ctx, name, full...)
	cmd.Dir = env.ModRoot
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	env.Logf("$ go %s\n%s%s", strings.Join(args, " "), truncateTail(string(out), 4000), stderr.String())
	results := ParseGoBench(string(out))
	env.GoBench = &GoBenchRun{Command: "go " + strings.Join(args, " "), Raw: string(out), Results: results}
	if err != nil {
		return Sample{}, fmt.Errorf("go test -bench: %w", err)
	}
	if len(results) == 0 {
		return Sample{}, fmt.Errorf("go test -bench printed no results")
	}
	return Sample{Values: map[string]float64{"benchmarks": float64(len(SummarizeGoBench(results)))}}, nil
}

func truncateTail(s string, n int) string {
	if len(s) > n {
		return "...\n" + s[len(s)-n:]
	}
	return s
}
