package bench

import (
	"bufio"
	"strconv"
	"strings"
)

// GoBenchResult is one line of go test -bench output. A figure the
// benchmark did not report is 0 (HasMBps tells MB/s apart).
type GoBenchResult struct {
	Pkg         string  `json:"pkg"`
	Name        string  `json:"name"` // without the -GOMAXPROCS suffix
	Procs       int     `json:"procs"`
	N           int64   `json:"n"`
	NsPerOp     float64 `json:"ns_per_op"`
	BytesPerOp  float64 `json:"bytes_per_op"`
	AllocsPerOp float64 `json:"allocs_per_op"`
	MBps        float64 `json:"mb_per_s,omitempty"`
	HasMem      bool    `json:"has_mem"`
}

// ParseGoBench parses the output of go test -bench (the format of
// golang.org/x/perf's benchfmt). Lines that are not results are skipped;
// "pkg:" lines name the package of the results after them.
func ParseGoBench(out string) []GoBenchResult {
	var res []GoBenchResult
	pkg := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || len(f)%2 != 0 {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		r := GoBenchResult{Pkg: pkg, Name: f[0], N: n, Procs: 1}
		if i := strings.LastIndexByte(r.Name, '-'); i > 0 {
			if p, err := strconv.Atoi(r.Name[i+1:]); err == nil {
				r.Name, r.Procs = r.Name[:i], p
			}
		}
		ok := false
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				r.NsPerOp, ok = v, true
			case "B/op":
				r.BytesPerOp, r.HasMem = v, true
			case "allocs/op":
				r.AllocsPerOp, r.HasMem = v, true
			case "MB/s":
				r.MBps = v
			}
		}
		if ok {
			res = append(res, r)
		}
	}
	return res
}

// GoBenchSummary is the median over -count runs of one benchmark.
type GoBenchSummary struct {
	Pkg, Name   string
	Runs        int
	NsPerOp     Summary
	BytesPerOp  float64
	AllocsPerOp float64
	MBps        Summary
	HasMem      bool
}

// SummarizeGoBench groups results by package and name, in first-seen order.
func SummarizeGoBench(rs []GoBenchResult) []GoBenchSummary {
	type acc struct {
		ns, mbps, b, a []float64
		hasMem         bool
	}
	var order []string
	m := map[string]*acc{}
	names := map[string][2]string{}
	for _, r := range rs {
		k := r.Pkg + "\x00" + r.Name
		a, ok := m[k]
		if !ok {
			a = &acc{}
			m[k] = a
			order = append(order, k)
			names[k] = [2]string{r.Pkg, r.Name}
		}
		a.ns = append(a.ns, r.NsPerOp)
		if r.MBps > 0 {
			a.mbps = append(a.mbps, r.MBps)
		}
		a.b = append(a.b, r.BytesPerOp)
		a.a = append(a.a, r.AllocsPerOp)
		a.hasMem = a.hasMem || r.HasMem
	}
	out := make([]GoBenchSummary, 0, len(order))
	for _, k := range order {
		a := m[k]
		out = append(out, GoBenchSummary{Pkg: names[k][0], Name: names[k][1], Runs: len(a.ns),
			NsPerOp: Summarize(a.ns), MBps: Summarize(a.mbps),
			BytesPerOp: Summarize(a.b).Median, AllocsPerOp: Summarize(a.a).Median, HasMem: a.hasMem})
	}
	return out
}
