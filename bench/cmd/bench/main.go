// Command bench runs onramp's benchmark scenarios against its peers in
// testnet namespaces and writes the results JSON and BENCHMARKS.md.
//
//	go run ./bench/cmd/bench [-quick] [-only RE] [-out bench/results] [-md BENCHMARKS.md]
//	go run ./bench/cmd/bench list                     # the scenarios
//	go run ./bench/cmd/bench render [results.json]    # BENCHMARKS.md from a results file (default: the newest)
//	go run ./bench/cmd/bench compare OLD.json NEW.json
//
// Running scenarios needs root (network namespaces); without it the
// command says so and exits 0 without measuring anything.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/onramp-net/onramp/bench"
	"github.com/onramp-net/onramp/testnet"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "list":
			for _, s := range bench.Scenarios() {
				kind := "peer of " + strings.Join(s.PeerOf, ", ")
				if s.Onramp {
					kind = "onramp"
					if len(s.PeerOf) > 0 {
						kind += "; reference of " + strings.Join(s.PeerOf, ", ")
					}
				}
				fmt.Printf("%-24s %-12s %s (%s)\n", s.Name, s.Area, s.Label, kind)
			}
			return
		case "render":
			exit(render(os.Args[2:]))
		case "compare":
			exit(compare(os.Args[2:]))
		case "merge":
			exit(merge(os.Args[2:]))
		}
	}
	exit(run())
}

func exit(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func modRoot() string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		wd, _ := os.Getwd()
		return wd
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

func run() error {
	quick := flag.Bool("quick", false, "a short smoke run: fewer repetitions, smaller sizes")
	only := flag.String("only", "", "run only the scenarios whose names match this regexp")
	outDir := flag.String("out", "bench/results", "directory for the results JSON")
	mdPath := flag.String("md", "BENCHMARKS.md", "markdown file to write")
	chartDir := flag.String("charts", "bench/charts", "directory for the SVG charts")
	reps := flag.Int("reps", 0, "repetitions per scenario (default 5, quick 3)")
	sutCPUs := flag.String("sut-cpus", "", "CPUs of the processes under test (default: the upper half)")
	loadCPUs := flag.String("load-cpus", "", "CPUs of the harness and load generators (default: the lower half)")
	verbose := flag.Bool("v", false, "stream every scenario's log")
	profile := flag.String("profile", "", "profile the last repetition of every scenario into this directory (perf record of the processes under test, Go heap and goroutine profiles of the held streams; results, report and charts go there too)")
	streams := flag.Int("streams", 0, "connections held by the l4-streams scenarios (default 5000, quick 1000; 10000 needs an open-file limit of 28192, raised if root may)")
	netstat := flag.Bool("netstat", false, "after every run, print what moved in the network namespaces of the processes under test (UDP datagrams and buffer drops, TCP retransmits, packets and their mean size per interface)")
	flag.Parse()

	scenarios := bench.Scenarios()
	if err := bench.Validate(scenarios, bench.Areas); err != nil {
		return err
	}
	var re *regexp.Regexp
	if *only != "" {
		var err error
		if re, err = regexp.Compile(*only); err != nil {
			return fmt.Errorf("-only: %w", err)
		}
	}
	scenarios = bench.Select(scenarios, re)
	if len(scenarios) == 0 {
		return fmt.Errorf("no scenario matches %q (go run ./bench/cmd/bench list)", *only)
	}
	if err := testnet.Available(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: SKIP: the benchmarks run in network namespaces and cannot run here: %v\n", err)
		return nil
	}

	// 5000 held connections: the most that fits an open-file hard limit of
	// 20000, which root cannot raise on the benchmark machine (HAProxy
	// asks for 2.5 descriptors per connection and refuses to start).
	env := &bench.Env{Quick: *quick, Reps: 5, BulkSeconds: 10, Echoes: 20000, ConnSeconds: 5, ConnWorkers: 8, Streams: 5000,
		GoBenchArgs: []string{"-count", "6"}, ModRoot: modRoot(), Bins: map[string]string{}}
	if *quick {
		env.Reps, env.BulkSeconds, env.Echoes, env.ConnSeconds, env.Streams = 3, 2, 2000, 1, 1000
		env.GoBenchArgs = []string{"-count", "1", "-benchtime", "100ms"}
	}
	env.Netstat = *netstat
	if *reps > 0 {
		env.Reps = *reps
	}
	if *streams > 0 {
		env.Streams = *streams
	}
	// The held streams take a descriptor each in the load generator and
	// in the echo origin (this process), and two in a direct proxy (the
	// edge, HAProxy): raise the limit, which the processes started later
	// inherit (root without CAP_SYS_RESOURCE, in a container, may not).
	if err := testnet.RaiseFileLimit(uint64(2*env.Streams + 8192)); err != nil {
		fmt.Fprintf(os.Stderr, "bench: warning: %v: %d streams need two descriptors each in a proxy, the l4-streams scenarios may fail\n", err, env.Streams)
	}
	env.SUTCPUs, env.LoadCPUs, env.AllCPUs = bench.DefaultPinning()
	if *sutCPUs != "" || *loadCPUs != "" {
		env.SUTCPUs, env.LoadCPUs = *sutCPUs, *loadCPUs
	}
	if *profile != "" {
		dir, err := filepath.Abs(*profile)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		// perf reads the symbols from the binaries after the run, the
		// edge and connector serve pprof on their metrics addresses, and
		// a profiled run (perf's overhead in its figures) writes nothing
		// into the repository.
		env.ProfileDir = dir
		os.Setenv("ONRAMP_BIN_DIR", filepath.Join(dir, "bin"))
		os.Setenv("ONRAMP_PPROF", "1")
		*outDir, *mdPath, *chartDir = dir, filepath.Join(dir, "BENCHMARKS.md"), filepath.Join(dir, "charts")
		fmt.Printf("bench: profiling into %s\n", dir)
	}
	if err := os.Chdir(env.ModRoot); err != nil {
		return err
	}

	start := time.Now()
	r := &bench.Run{Schema: bench.SchemaVersion, Date: start.UTC(), Quick: *quick, Only: *only,
		Command: strings.Join(os.Args, " "), Machine: machine(),
		Pinning: bench.Pinning{SUT: env.SUTCPUs, Load: env.LoadCPUs},
		Params: bench.Params{Reps: env.Reps, BulkSeconds: float64(env.BulkSeconds), Echoes: env.Echoes,
			ConnSeconds: env.ConnSeconds, ConnWorkers: env.ConnWorkers, Streams: env.Streams,
			GoBenchArgs: strings.Join(env.GoBenchArgs, " ")}}
	if env.SUTCPUs == "" {
		r.Pinning.Note = "one CPU: nothing pinned"
	}

	// Sweep namespaces that a killed earlier run left, then build every
	// binary before pinning this process (builds use all CPUs).
	if gone, err := testnet.Sweep(); err == nil && len(gone) > 0 {
		fmt.Printf("bench: swept %d namespaces left by earlier runs\n", len(gone))
	}
	defer testnet.RemoveBinaries()
	fmt.Printf("bench: building binaries (edge, connector, rawquic, rawtls, loadgen, wgload)\n")
	for _, name := range []string{"rawquic", "rawtls", "loadgen", "wgload"} {
		p, err := testnet.BuildBinary("github.com/onramp-net/onramp/bench/cmd/" + name)
		if err != nil {
			return err
		}
		env.Bins[name] = p
	}
	for _, pkg := range []string{testnet.EdgePkg, testnet.ConnectorPkg} {
		if _, err := testnet.BuildBinary(pkg); err != nil {
			// The tunnel scenarios will fail with this error; the
			// peers still run.
			fmt.Fprintf(os.Stderr, "bench: warning: %v\n", err)
		}
	}
	if env.LoadCPUs != "" {
		if err := bench.PinProcess(os.Getpid(), env.LoadCPUs); err != nil {
			return err
		}
	}
	fmt.Printf("bench: %d scenarios; %d runs each; processes under test on CPU %s, load on CPU %s\n",
		len(scenarios), env.Reps, orNone(env.SUTCPUs), orNone(env.LoadCPUs))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	runner := &bench.Runner{Env: env, Out: os.Stdout, Verbose: *verbose}
	r.Scenarios = runner.RunAll(ctx, scenarios)
	r.GoBench = env.GoBench
	r.Seconds = time.Since(start).Seconds()

	path, err := r.Write(*outDir)
	if err != nil {
		return err
	}
	fmt.Printf("\nbench: results in %s\n", path)
	if err := writeReport(r, path, *mdPath, *chartDir); err != nil {
		return err
	}
	var failed, unavail []string
	for _, s := range r.Scenarios {
		if s.Error != "" {
			failed = append(failed, s.Name)
		}
		if s.NotAvailable != "" {
			unavail = append(unavail, s.Name)
		}
	}
	fmt.Printf("bench: %d of %d scenarios passed in %s\n", len(r.Scenarios)-len(failed)-len(unavail), len(scenarios), time.Since(start).Round(time.Second))
	if len(unavail) > 0 {
		fmt.Printf("bench: not available here (not failures): %s\n", strings.Join(unavail, ", "))
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted")
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d scenarios failed: %s", len(failed), strings.Join(failed, ", "))
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "(not pinned)"
	}
	return s
}

func writeReport(r *bench.Run, resultsPath, mdPath, chartDir string) error {
	charts, err := bench.WriteCharts(r, bench.Areas, chartDir)
	if err != nil {
		return fmt.Errorf("charts: %w", err)
	}
	mdDir := filepath.Dir(mdPath)
	rel := func(p string) string {
		if q, err := filepath.Rel(mdDir, p); err == nil {
			return filepath.ToSlash(q)
		}
		return p
	}
	links := map[string]string{}
	for k, f := range charts {
		links[k] = rel(filepath.Join(chartDir, f))
	}
	md := bench.Markdown(r, bench.Areas, bench.ReportOptions{ResultsPath: rel(resultsPath), Charts: links})
	if err := os.WriteFile(mdPath, []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Printf("bench: wrote %s and %d charts in %s\n", mdPath, len(charts), chartDir)
	return nil
}

func render(args []string) error {
	fs := flag.NewFlagSet("render", flag.ExitOnError)
	outDir := fs.String("out", "bench/results", "directory of the results JSON")
	mdPath := fs.String("md", "BENCHMARKS.md", "markdown file to write")
	chartDir := fs.String("charts", "bench/charts", "directory for the SVG charts")
	_ = fs.Parse(args)
	path := fs.Arg(0)
	if path == "" {
		var err error
		if path, err = bench.Newest(*outDir); err != nil {
			return err
		}
	}
	r, err := bench.LoadRun(path)
	if err != nil {
		return err
	}
	return writeReport(r, path, *mdPath, *chartDir)
}

// merge writes a results file of BASE with the areas of each later run in
// place of its own, and BENCHMARKS.md and the charts from it.
func merge(args []string) error {
	fs := flag.NewFlagSet("merge", flag.ExitOnError)
	outDir := fs.String("out", "bench/results", "directory for the merged results JSON")
	mdPath := fs.String("md", "BENCHMARKS.md", "markdown file to write")
	chartDir := fs.String("charts", "bench/charts", "directory for the SVG charts")
	_ = fs.Parse(args)
	if fs.NArg() < 2 {
		return errors.New("usage: bench merge [-out DIR] [-md F] [-charts DIR] BASE.json LATER.json (one or more)")
	}
	base, err := bench.LoadRun(fs.Arg(0))
	if err != nil {
		return err
	}
	var later []*bench.Run
	for _, p := range fs.Args()[1:] {
		r, err := bench.LoadRun(p)
		if err != nil {
			return err
		}
		later = append(later, r)
	}
	m, err := bench.Merge(base, later...)
	if err != nil {
		return err
	}
	path, err := m.Write(*outDir)
	if err != nil {
		return err
	}
	fmt.Printf("bench: merged %d runs into %s\n", len(later)+1, path)
	return writeReport(m, path, *mdPath, *chartDir)
}

func compare(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: bench compare OLD.json NEW.json")
	}
	old, err := bench.LoadRun(args[0])
	if err != nil {
		return err
	}
	cur, err := bench.LoadRun(args[1])
	if err != nil {
		return err
	}
	bench.Compare(os.Stdout, old, cur)
	a, b := bench.GoBenchFiles(old, cur)
	if a == "" || b == "" {
		fmt.Println("\n(no Go microbenchmarks in both runs: benchstat skipped)")
		return nil
	}
	dir, err := os.MkdirTemp("", "bench-compare-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	oldF, newF := filepath.Join(dir, "old.txt"), filepath.Join(dir, "new.txt")
	if err := os.WriteFile(oldF, []byte(a), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(newF, []byte(b), 0o644); err != nil {
		return err
	}
	fmt.Println("\nGo microbenchmarks (benchstat old new):")
	cmd := exec.Command("go", "tool", "benchstat", "old="+oldF, "new="+newF)
	cmd.Dir = modRoot()
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}

func machine() bench.Machine {
	m := bench.Machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil {
		m.Dirty = len(bytes.TrimSpace(out)) > 0
	}
	return m
}
