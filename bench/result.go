package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// SchemaVersion is the version of the results JSON; bump it when a field
// changes meaning.
const SchemaVersion = 1

// Run is the results file of one run of the harness (bench/results/*.json).
type Run struct {
	Schema    int              `json:"schema"`
	Date      time.Time        `json:"date"`
	Quick     bool             `json:"quick"`
	Only      string           `json:"only,omitempty"` // the -only pattern, if any
	Command   string           `json:"command"`
	Seconds   float64          `json:"seconds"` // wall time of the whole run
	Machine   Machine          `json:"machine"`
	Pinning   Pinning          `json:"pinning"`
	Params    Params           `json:"params"`
	Scenarios []ScenarioResult `json:"scenarios"`
	GoBench   *GoBenchRun      `json:"go_bench,omitempty"`
	// Merged lists the later runs whose areas replaced this run's
	// (bench merge): every figure of an area comes from one run.
	Merged []MergedRun `json:"merged,omitempty"`
}

// MergedRun is a later run merged into a run: where its areas' figures
// come from.
type MergedRun struct {
	Date    time.Time `json:"date"`
	Only    string    `json:"only,omitempty"`
	Quick   bool      `json:"quick,omitempty"`
	Commit  string    `json:"commit"`
	Dirty   bool      `json:"dirty,omitempty"`
	Seconds float64   `json:"seconds"`
	Areas   []string  `json:"areas"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUModel  string `json:"cpu_model"`
	Cores     int    `json:"cores"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
	Commit    string `json:"commit"`
	Dirty     bool   `json:"dirty"` // uncommitted changes in the work tree
}

// Pinning records which CPUs ran what ("" means not pinned).
type Pinning struct {
	SUT  string `json:"sut"`  // the processes under test: edge, connector, haproxy, socat, rawquic, rawtls
	Load string `json:"load"` // the harness, iperf3, the load generator, the origins
	Note string `json:"note,omitempty"`
}

// Params are the sizes a run used.
type Params struct {
	Reps        int     `json:"reps"`
	BulkSeconds float64 `json:"bulk_seconds"`
	Echoes      int     `json:"echoes"`
	ConnSeconds float64 `json:"conn_seconds"`
	ConnWorkers int     `json:"conn_workers"`
	Streams     int     `json:"streams"`
	GoBenchArgs string  `json:"go_bench_args"`
}

// ScenarioResult is every sample of one scenario.
type ScenarioResult struct {
	Name      string         `json:"name"`
	Area      string         `json:"area"`
	Label     string         `json:"label"`
	Onramp    bool           `json:"onramp"`            // the system under test (else a peer or ceiling)
	PeerOf    []string       `json:"peer_of,omitempty"` // onramp scenarios it is compared with
	Goals     []Goal         `json:"goals,omitempty"`
	Setup     string         `json:"setup"` // what runs where, in words
	Reproduce string         `json:"reproduce"`
	Metrics   []MetricResult `json:"metrics"`
	Seconds   float64        `json:"seconds"`
	Error     string         `json:"error,omitempty"`
	// NotAvailable says why the scenario could not run on this machine or
	// build (a kernel feature, a strategy the binary lacks): not a failure.
	NotAvailable string `json:"not_available,omitempty"`
	LogTail      string `json:"log_tail,omitempty"` // the end of the log of a failed (or unavailable) scenario
	// Machine is how fast the SUT CPU was around each run, by the
	// harness's probe (absent in results from before it).
	Machine *MachineProbe `json:"machine,omitempty"`
}

// MachineProbe is the machine probe's figures, one per run, in MB per
// CPU second: sealing with ChaCha20-Poly1305 (in the core's caches) and
// copying 16 MiB (beyond them). A run whose copy figure is well below
// the others' ran while the machine was slow.
type MachineProbe struct {
	SealMBps []JSONNum `json:"seal_mb_per_cpu_s"`
	CopyMBps []JSONNum `json:"copy_mb_per_cpu_s"`
}

// MetricResult is one metric's samples, one per repetition, and their
// summary. A sample that could not be measured is null in the JSON.
type MetricResult struct {
	Name    string    `json:"name"`
	Unit    string    `json:"unit"`
	Lower   bool      `json:"lower_is_better"`
	Samples []JSONNum `json:"samples"`
	Summary Summary   `json:"summary"`
	Note    string    `json:"note,omitempty"`
}

// JSONNum is a float64 that is null in JSON when it is NaN (not measured).
type JSONNum float64

// MarshalJSON writes null for NaN and infinities.
func (n JSONNum) MarshalJSON() ([]byte, error) {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, f, 'g', -1, 64), nil
}

// UnmarshalJSON reads null as NaN.
func (n *JSONNum) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*n = JSONNum(math.NaN())
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	*n = JSONNum(f)
	return err
}

// Floats returns the samples with null as NaN.
func (m MetricResult) Floats() []float64 {
	out := make([]float64, len(m.Samples))
	for i, s := range m.Samples {
		out[i] = float64(s)
	}
	return out
}

// Metric returns the named metric of the scenario, or nil.
func (s *ScenarioResult) Metric(name string) *MetricResult {
	for i := range s.Metrics {
		if s.Metrics[i].Name == name {
			return &s.Metrics[i]
		}
	}
	return nil
}

// GoBenchRun is the Go microbenchmarks of a run: the raw output (what
// benchstat reads) and its parsed lines.
type GoBenchRun struct {
	Command string          `json:"command"`
	Raw     string          `json:"raw"`
	Results []GoBenchResult `json:"results"`
}

// Scenario returns the named scenario result, or nil.
func (r *Run) Scenario(name string) *ScenarioResult {
	for i := range r.Scenarios {
		if r.Scenarios[i].Name == name {
			return &r.Scenarios[i]
		}
	}
	return nil
}

// Write writes the run as indented JSON to dir/<date>-<commit>.json and
// returns the path.
func (r *Run) Write(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	name := r.Date.UTC().Format("20060102T150405Z")
	if c := r.Machine.Commit; c != "" {
		name += "-" + c[:min(len(c), 12)]
	}
	if n := len(r.Merged); n > 0 { // named, and sorted, by its newest part
		last := r.Merged[n-1]
		name = last.Date.UTC().Format("20060102T150405Z") + "-" + last.Commit[:min(len(last.Commit), 12)] + "-merged"
	}
	if r.Quick {
		name += "-quick"
	}
	path := filepath.Join(dir, name+".json")
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	return path, os.WriteFile(path, append(b, '\n'), 0o644)
}

// Merge returns base with each later run's areas in place of its own, in
// order: an area that has any scenario in a later run takes all its
// scenarios from that run, so that every ratio still compares two
// figures of one run. The Go microbenchmarks count as an area ("go").
// The runs' parameters must match (a quick run does not merge into a full
// one). base is not changed.
func Merge(base *Run, later ...*Run) (*Run, error) {
	out := *base
	out.Scenarios = append([]ScenarioResult(nil), base.Scenarios...)
	out.Merged = append([]MergedRun(nil), base.Merged...)
	for _, r := range later {
		if r.Quick != base.Quick {
			return nil, fmt.Errorf("merge: the run of %s is quick=%v, the base quick=%v", r.Date.Format(time.RFC3339), r.Quick, base.Quick)
		}
		if r.Params.Reps != base.Params.Reps || r.Params.BulkSeconds != base.Params.BulkSeconds {
			return nil, fmt.Errorf("merge: the run of %s has %d runs of %gs per scenario, the base %d of %gs",
				r.Date.Format(time.RFC3339), r.Params.Reps, r.Params.BulkSeconds, base.Params.Reps, base.Params.BulkSeconds)
		}
		areas := map[string]bool{}
		for _, s := range r.Scenarios {
			areas[s.Area] = true
		}
		if r.GoBench != nil {
			areas["go"] = true
			out.GoBench = r.GoBench
		}
		if len(areas) == 0 {
			return nil, fmt.Errorf("merge: the run of %s has no scenarios", r.Date.Format(time.RFC3339))
		}
		kept := out.Scenarios[:0:0]
		for _, s := range out.Scenarios {
			if !areas[s.Area] {
				kept = append(kept, s)
			}
		}
		out.Scenarios = append(kept, r.Scenarios...)
		names := make([]string, 0, len(areas))
		for a := range areas {
			names = append(names, a)
		}
		sort.Strings(names)
		out.Merged = append(out.Merged, MergedRun{Date: r.Date, Only: r.Only, Quick: r.Quick, Commit: r.Machine.Commit,
			Dirty: r.Machine.Dirty, Seconds: r.Seconds, Areas: names})
	}
	return &out, nil
}

// LoadRun reads a results file.
func LoadRun(path string) (*Run, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Run
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if r.Schema != SchemaVersion {
		return nil, fmt.Errorf("%s: schema %d, this harness reads %d", path, r.Schema, SchemaVersion)
	}
	return &r, nil
}

// Newest returns the newest results file in dir (by name, which starts
// with the date).
func Newest(dir string) (string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var names []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".json") {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("no results in %s", dir)
	}
	sort.Strings(names)
	return filepath.Join(dir, names[len(names)-1]), nil
}
