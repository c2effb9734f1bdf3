package bench

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/onramp-net/onramp/testnet"
)

// Profiles: with Env.ProfileDir set (bench -profile DIR, make profile)
// the last repetition of every scenario runs under perf record, call
// graphs of the processes under test (Go symbols from the binaries the
// run built, kept in DIR/bin), and DIR/<scenario>.txt summarises it: the
// CPU by process and shared object, and the functions with the most CPU
// including their callees. The held-streams scenarios also take each
// onramp process's Go heap and goroutine profiles while the streams are
// held (DIR/<scenario>.<role>.heap.pb.gz, .goroutine.pb.gz; top entries
// in the .txt). Profiled figures carry perf's overhead: they are for
// finding costs, not for BENCHMARKS.md.

// PprofTarget is where a process under test serves Go's profiler (with
// ONRAMP_PPROF=1): its metrics address inside Node.
type PprofTarget struct {
	Node *testnet.Node
	Addr string
}

// notFileName is what profileName replaces in a scenario's name.
var notFileName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// profileName makes a scenario name a file name.
func profileName(scenario string) string { return notFileName.ReplaceAllString(scenario, "_") }

// startPerf records the CPU of pids with call graphs until the returned
// function is called, which then writes the summary. Without perf it
// logs why and records nothing.
func (env *Env) startPerf(scenario string, pids []int) (stop func()) {
	if len(pids) == 0 {
		return func() {}
	}
	if _, err := exec.LookPath("perf"); err != nil {
		env.Logf("profile: no perf (apt-get install linux-perf): %v", err)
		return func() {}
	}
	data := filepath.Join(env.ProfileDir, profileName(scenario)+".perf.data")
	ps := make([]string, len(pids))
	for i, p := range pids {
		ps[i] = strconv.Itoa(p)
	}
	cmd := exec.Command("perf", "record", "-q", "-g", "-F", "999", "-p", strings.Join(ps, ","), "-o", data)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		env.Logf("profile: perf record: %v", err)
		return func() {}
	}
	time.Sleep(200 * time.Millisecond) // attached before the load starts
	return func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		if err := cmd.Wait(); err != nil {
			env.Logf("profile: perf record: %v: %s", err, out.String())
		}
		env.perfSummary(scenario, data)
	}
}

// perfSummary appends the report of data to the scenario's summary.
func (env *Env) perfSummary(scenario, data string) {
	reports := []struct {
		title string
		args  []string
	}{
		{"CPU by process and shared object", []string{"--no-children", "--sort", "comm,dso", "-g", "none", "--percent-limit", "0.5"}},
		{"functions by CPU with their callees (children)", []string{"--children", "--sort", "comm,sym", "-g", "none", "--percent-limit", "1"}},
		{"functions by CPU of their own (self)", []string{"--no-children", "--sort", "comm,sym", "-g", "none", "--percent-limit", "0.5"}},
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# %s: perf record -g -F 999 of the processes under test, last repetition\n# perf report -i %s\n", scenario, data)
	for _, r := range reports {
		args := append([]string{"report", "-i", data, "--stdio"}, r.args...)
		out, err := exec.Command("perf", args...).CombinedOutput()
		if err != nil {
			env.Logf("profile: perf report: %v: %s", err, truncateTail(string(out), 2000))
			return
		}
		fmt.Fprintf(&b, "\n## %s\n%s", r.title, dropComments(string(out), 80))
	}
	env.appendSummary(scenario, b.String())
}

// pprofSnapshot saves the heap and goroutine profiles of every target of
// rig and appends their top entries to the scenario's summary.
//
// before is each role's memory before the streams opened (memstatsBefore),
// for the difference per stream of the run's Streams. Every target's memory is read first,
// then every profile fetched, and only then summarised (go tool pprof
// takes a second or so each): all of it while the streams are held.
func (env *Env) pprofSnapshot(ctx context.Context, scenario string, rig *Rig, before map[string]map[string]float64) {
	roles := slices.Sorted(maps.Keys(rig.Pprof))
	for _, role := range roles {
		env.memstatsSnapshot(ctx, scenario, rig, role, before[role])
	}
	type saved struct{ role, kind, file string }
	var files []saved
	for _, role := range roles {
		tg := rig.Pprof[role]
		for _, kind := range []string{"heap", "goroutine"} {
			file := filepath.Join(env.ProfileDir, fmt.Sprintf("%s.%s.%s.pb.gz", profileName(scenario), role, kind))
			cmd := tg.Node.Command(ctx, "curl", "-sf", "--max-time", "20", "-o", file, "http://"+tg.Addr+"/debug/pprof/"+kind)
			if out, err := cmd.CombinedOutput(); err != nil {
				env.Logf("profile: %s %s profile: %v: %s", role, kind, err, out)
				continue
			}
			files = append(files, saved{role, kind, file})
		}
	}
	for _, f := range files {
		args := []string{"tool", "pprof", "-top", "-nodecount", "25"}
		if f.kind == "heap" {
			args = append(args, "-sample_index", "inuse_space")
		}
		out, err := exec.CommandContext(ctx, "go", append(args, f.file)...).CombinedOutput()
		if err != nil {
			env.Logf("profile: go tool pprof %s: %v: %s", f.file, err, out)
			continue
		}
		env.appendSummary(scenario, fmt.Sprintf("\n## %s: Go %s profile while the streams are held (%s)\n%s", f.role, f.kind, f.file, out))
	}
}

// memstatsLines are the Go runtime's memory figures a held stream's cost
// splits into (the Prometheus Go collector's names on /metrics).
var memstatsLines = regexp.MustCompile(`(?m)^(go_goroutines|go_memstats_(sys|heap_inuse|heap_alloc|heap_idle|heap_released|stack_inuse|mspan_inuse|other_sys)_bytes) (\S+)$`)

// memstats reads the target's goroutine count and runtime memory classes
// (heap in use, stacks, ...) from its /metrics, by metric name.
func memstats(ctx context.Context, tg PprofTarget) (map[string]float64, error) {
	out, err := tg.Node.Command(ctx, "curl", "-sf", "--max-time", "20", "http://"+tg.Addr+"/metrics").Output()
	if err != nil {
		return nil, err
	}
	return parseMemstats(string(out)), nil
}

// parseMemstats picks memstatsLines out of a /metrics page.
func parseMemstats(page string) map[string]float64 {
	m := map[string]float64{}
	for _, l := range memstatsLines.FindAllStringSubmatch(page, -1) {
		if v, err := strconv.ParseFloat(l[3], 64); err == nil {
			m[l[1]] = v
		}
	}
	return m
}

// memstatsOrder is the order memstatsTable lists the figures in.
var memstatsOrder = []string{"rss", "go_goroutines", "go_memstats_heap_inuse_bytes", "go_memstats_heap_alloc_bytes",
	"go_memstats_stack_inuse_bytes", "go_memstats_heap_idle_bytes", "go_memstats_heap_released_bytes",
	"go_memstats_mspan_inuse_bytes", "go_memstats_other_sys_bytes", "go_memstats_sys_bytes"}

// memstatsTable is a role's runtime memory before the streams opened and
// while they are held, and the difference per stream: where a held
// stream's resident memory goes (rss is VmRSS in bytes). Goroutines per
// stream are a count, the rest bytes.
func memstatsTable(before, held map[string]float64, streams int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| figure | before | held | per stream (%d) |\n|---|---|---|---|\n", streams)
	for _, k := range memstatsOrder {
		h, ok := held[k]
		if !ok {
			continue
		}
		show := func(v float64) string { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }
		perFmt := "%.0f B"
		if k == "go_goroutines" {
			show = func(v float64) string { return fmt.Sprintf("%.0f", v) }
			perFmt = "%.2f"
		}
		was, per := "?", "?"
		if v0, ok := before[k]; ok {
			was = show(v0)
			if streams > 0 {
				per = fmt.Sprintf(perFmt, (h-v0)/float64(streams))
			}
		}
		name := strings.TrimPrefix(strings.TrimSuffix(strings.TrimPrefix(k, "go_memstats_"), "_bytes"), "go_")
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", name, was, show(h), per)
	}
	return b.String()
}

// memstatsBefore reads every target's runtime memory and VmRSS before the
// held streams open, for memstatsSnapshot's per-stream figures.
func (env *Env) memstatsBefore(ctx context.Context, rig *Rig) map[string]map[string]float64 {
	out := map[string]map[string]float64{}
	for role := range rig.Pprof {
		if m := env.roleMemory(ctx, rig, role); m != nil {
			out[role] = m
		}
	}
	return out
}

// roleMemory is the runtime memory (memstats) of rig's process named role
// and, as "rss", its VmRSS in bytes; nil (logged) if its metrics cannot
// be read.
func (env *Env) roleMemory(ctx context.Context, rig *Rig, role string) map[string]float64 {
	m, err := memstats(ctx, rig.Pprof[role])
	if err != nil {
		env.Logf("profile: %s metrics: %v", role, err)
		return nil
	}
	for pid, r := range rig.Roles {
		if r != role {
			continue
		}
		if mem, err := ReadMem(pid); err == nil {
			m["rss"] = float64(mem.VmRSS) * 1024
		}
	}
	return m
}

// memstatsSnapshot appends the goroutine count, runtime memory classes
// (heap in use, stacks, ...) and VmRSS of rig's process named role to the
// scenario's summary, against before (memstatsBefore) per stream of the
// run: where a held stream's resident memory goes, beside the heap
// profile's sample.
func (env *Env) memstatsSnapshot(ctx context.Context, scenario string, rig *Rig, role string, before map[string]float64) {
	held := env.roleMemory(ctx, rig, role)
	if held == nil {
		return
	}
	env.appendSummary(scenario, fmt.Sprintf("\n## %s: Go runtime memory while the streams are held\n%s", role, memstatsTable(before, held, env.Streams)))
}

func (env *Env) appendSummary(scenario, text string) {
	f, err := os.OpenFile(filepath.Join(env.ProfileDir, profileName(scenario)+".txt"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		env.Logf("profile: %v", err)
		return
	}
	defer f.Close()
	_, _ = f.WriteString(text)
}

// dropComments keeps a perf report's table: no comment or blank lines, at
// most max lines.
func dropComments(s string, max int) string {
	var b strings.Builder
	n := 0
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "#") || strings.TrimSpace(l) == "" {
			continue
		}
		if n++; n > max {
			break
		}
		b.WriteString(l + "\n")
	}
	return b.String()
}
