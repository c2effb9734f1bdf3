package bench

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math"
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
// every repetition runs under perf record, call graphs of everything on
// the SUT CPUs (perfRecordArgs; Go symbols from the binaries the run
// built, kept in DIR/bin), and DIR/<scenario>.txt summarises them: the
// CPU by layer over the repetitions (layerTable), then the last
// repetition's CPU by process and shared object, and the functions with
// the most CPU including their callees. The held-streams scenarios also take each
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

// startPerf records the CPU of the processes under test with call
// graphs until the returned function is called, which returns the
// recording for perfSummary. Without perf it logs why, records nothing
// and stop returns "".
func (env *Env) startPerf(scenario string, pids []int, last bool) (stop func() (data string)) {
	none := func() string { return "" }
	if len(pids) == 0 {
		return none
	}
	if _, err := exec.LookPath("perf"); err != nil {
		env.Logf("profile: no perf (apt-get install linux-perf): %v", err)
		return none
	}
	name := profileName(scenario)
	if !last {
		name += ".rep"
	}
	data := filepath.Join(env.ProfileDir, name+".perf.data")
	cmd := exec.Command("perf", perfRecordArgs(env.SUTCPUs, pids, data)...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		env.Logf("profile: perf record: %v", err)
		return none
	}
	time.Sleep(200 * time.Millisecond) // attached before the load starts
	return func() string {
		_ = cmd.Process.Signal(syscall.SIGINT)
		if err := cmd.Wait(); err != nil {
			env.Logf("profile: perf record: %v: %s", err, out.String())
		}
		return data
	}
}

// perfRecordArgs are perf record's arguments: with SUT CPUs, everything
// that runs on them (the processes under test, a process the run starts
// there, as a raw transport's sender, and the kernel's work there, such
// as the receive softirqs of their sockets; a CPU's idle time shows as
// swapper), else the processes pids. Every sample is about a
// millisecond of one CPU (-F 999), so a function's samples give its CPU
// time whatever else was recorded.
func perfRecordArgs(sutCPUs string, pids []int, data string) []string {
	args := []string{"record", "-q", "-g", "-F", "999"}
	if sutCPUs != "" {
		args = append(args, "-C", sutCPUs)
	} else {
		ps := make([]string, len(pids))
		for i, p := range pids {
			ps[i] = strconv.Itoa(p)
		}
		args = append(args, "-p", strings.Join(ps, ","))
	}
	return append(args, "-o", data)
}

// perfSummary appends the report of data to the scenario's summary:
// the CPU by layer over the repetitions (see layerTable), then perf's own
// tables of data, the last repetition's recording.
func (env *Env) perfSummary(scenario, data string, reps []layerRep) {
	reports := []struct {
		title string
		args  []string
	}{
		{"CPU by process and shared object", []string{"--no-children", "--sort", "comm,dso", "-g", "none", "--percent-limit", "0.5"}},
		{"functions by CPU with their callees (children)", []string{"--children", "--sort", "comm,sym", "-g", "none", "--percent-limit", "1"}},
		{"functions by CPU of their own (self)", []string{"--no-children", "--sort", "comm,sym", "-g", "none", "--percent-limit", "0.5"}},
	}
	var b strings.Builder
	what := "the processes under test"
	if env.SUTCPUs != "" {
		what = "the SUT CPUs " + env.SUTCPUs
	}
	fmt.Fprintf(&b, "# %s: perf record -g -F 999 of %s, last repetition\n# perf report -i %s\n", scenario, what, data)
	fmt.Fprintf(&b, "\n## CPU by layer (every process but the idle task; medians over %d repetitions: the layer's share, and that share of the repetition's CPU figure)\n%s", len(reps), layerTable(reps))
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

// A layer is where a profile's CPU went: the transport's crypto, quic-go,
// onramp's own code, Go's runtime and library, copies in user space, and
// the kernel's copies, its return from interrupts and system calls, and
// the rest of it. Split by each repetition's CPU per GB (or per
// 1000 operations), the layers of two scenarios say where one costs more
// than the other.
var layers = []struct {
	name   string
	kernel bool
	re     *regexp.Regexp // of the symbol
}{
	{"kernel: copies to and from user space", true, regexp.MustCompile(`copy_(to|from)_iter|copy_user|rep_movs|__skb_datagram_iter|csum_and_copy`)},
	{"kernel: pvm_irq_enable (returns from system calls and interrupts on this guest)", true, regexp.MustCompile(`pvm_irq_enable`)},
	{"kernel: the rest (TCP/UDP, softirqs, scheduler, polling)", true, regexp.MustCompile(``)},
	{"crypto (AEAD seal and open)", false, regexp.MustCompile(`/aes|/gcm|chacha20|poly1305|xorNonceAEAD|fips140/`)},
	{"user-space copies (memmove, memclr)", false, regexp.MustCompile(`^runtime\.mem(move|clr)`)},
	{"quic-go", false, regexp.MustCompile(`quic-go/`)},
	{"onramp", false, regexp.MustCompile(`onramp-net/onramp/`)},
	{"Go runtime (scheduler, GC, allocation)", false, regexp.MustCompile(`^(runtime\.|internal/runtime/|gcWriteBarrier)`)},
	{"Go library (net, syscall, poll, sync, tls records)", false, regexp.MustCompile(`^(net\.|syscall\.|internal/|os\.|sync\.|time\.|crypto/|golang\.org/)`)},
}

// layerOf names the layer of a sample of comm in sym (kernel: perf's [k]).
func layerOf(comm string, kernel bool, sym string) string {
	for _, l := range layers {
		if l.kernel == kernel && l.re.MatchString(sym) {
			return l.name
		}
	}
	return "other: " + comm
}

// perfLine is a line of perf report -n --sort comm,dso,sym: share,
// samples, comm, dso, [k] or [.], symbol.
var perfLine = regexp.MustCompile(`^\s*[\d.]+%\s+(\d+)\s+(\S+)\s+(\S+)\s+\[([k.])\]\s+(.+?)\s*$`)

// layerRep is one repetition's CPU by layer: each layer's share of the
// samples (the idle task left out), and the repetition's CPU figure
// (cpu_per_gb or cpu_per_kop, NaN without one) in unit.
type layerRep struct {
	shares  map[string]float64
	samples int
	per     float64
	unit    string
}

// perfLayers sums the recording data by layer, with v the repetition's
// figures.
func (env *Env) perfLayers(data string, v map[string]float64) layerRep {
	out, err := exec.Command("perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "comm,dso,sym", "-g", "none", "-n", "--percent-limit", "0").Output()
	if err != nil {
		env.Logf("profile: perf report: %v", err)
	}
	r := layerShares(string(out))
	r.per = math.NaN()
	for _, m := range []struct{ name, unit string }{{"cpu_per_gb", "CPU-s/GB"}, {"cpu_per_kop", "CPU-ms/1k"}} {
		if x, ok := v[m.name]; ok {
			r.per, r.unit = x, m.unit
			break
		}
	}
	return r
}

// layerShares sums a perf report (-n --sort comm,dso,sym) by layer, the
// idle task (swapper) left out.
func layerShares(report string) layerRep {
	sums := map[string]int{}
	total := 0
	for line := range strings.SplitSeq(report, "\n") {
		m := perfLine.FindStringSubmatch(line)
		if m == nil || m[2] == "swapper" {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		sums[layerOf(m[2], m[4] == "k", m[5])] += n
		total += n
	}
	r := layerRep{shares: map[string]float64{}, samples: total, per: math.NaN()}
	for name, n := range sums {
		r.shares[name] = float64(n) / float64(total)
	}
	return r
}

// layerTable writes, for each layer, the median over reps of its share
// and, where the repetitions have a CPU figure, of that share of it: a
// slow spell of the machine in one repetition moves neither much.
func layerTable(reps []layerRep) string {
	var withData []layerRep
	unit, per := "", true
	for _, r := range reps {
		if r.samples == 0 {
			continue
		}
		withData = append(withData, r)
		if math.IsNaN(r.per) || r.per <= 0 {
			per = false
		} else {
			unit = r.unit
		}
	}
	if len(withData) == 0 {
		return ""
	}
	type row struct {
		name       string
		share, abs float64
	}
	var rows []row
	names := map[string]bool{}
	for _, r := range withData {
		for name := range r.shares {
			names[name] = true
		}
	}
	samples := make([]float64, 0, len(withData))
	for _, r := range withData {
		samples = append(samples, float64(r.samples))
	}
	for name := range names {
		shares := make([]float64, 0, len(withData))
		abs := make([]float64, 0, len(withData))
		for _, r := range withData {
			shares = append(shares, r.shares[name])
			abs = append(abs, r.shares[name]*r.per)
		}
		slices.Sort(shares)
		slices.Sort(abs)
		rows = append(rows, row{name, Median(shares), Median(abs)})
	}
	slices.SortFunc(rows, func(a, b row) int {
		if c := cmp.Compare(b.share, a.share); c != 0 {
			return c
		}
		return strings.Compare(a.name, b.name)
	})
	var b strings.Builder
	if per {
		fmt.Fprintf(&b, "| layer | share | %s |\n|---|---|---|\n", unit)
	} else {
		b.WriteString("| layer | share |\n|---|---|\n")
	}
	for _, r := range rows {
		if per {
			fmt.Fprintf(&b, "| %s | %.1f%% | %.3g |\n", r.name, 100*r.share, r.abs)
		} else {
			fmt.Fprintf(&b, "| %s | %.1f%% |\n", r.name, 100*r.share)
		}
	}
	slices.Sort(samples)
	fmt.Fprintf(&b, "(%d repetitions, median %.0f samples each)\n", len(withData), Median(samples))
	return b.String()
}
