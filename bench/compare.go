package bench

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// Compare writes, for every scenario metric present in both runs, the old
// and new figures, the change of the medians, and whether the change is
// beyond the noise: the min–max ranges of the two runs do not overlap.
// Go microbenchmarks are left to benchstat (see [GoBenchFiles]).
func Compare(w io.Writer, old, cur *Run) {
	fmt.Fprintf(w, "old: %s commit %s%s (%d runs)\nnew: %s commit %s%s (%d runs)\n\n",
		old.Date.UTC().Format("2006-01-02 15:04"), short(old.Machine.Commit), quickTag(old), old.Params.Reps,
		cur.Date.UTC().Format("2006-01-02 15:04"), short(cur.Machine.Commit), quickTag(cur), cur.Params.Reps)
	if old.Quick != cur.Quick {
		fmt.Fprintf(w, "warning: one run is QUICK (shorter runs, smaller sizes): differences say little\n\n")
	}
	if old.Machine.CPUModel != cur.Machine.CPUModel || old.Machine.Cores != cur.Machine.Cores {
		fmt.Fprintf(w, "warning: different machines (%s, %d cores vs %s, %d cores)\n\n",
			old.Machine.CPUModel, old.Machine.Cores, cur.Machine.CPUModel, cur.Machine.Cores)
	}
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tmetric\told\tnew\tchange\tverdict")
	for _, ns := range cur.Scenarios {
		prev := old.Scenario(ns.Name)
		if prev == nil {
			fmt.Fprintf(tw, "%s\t\t\t\t\tnew scenario\n", ns.Name)
			continue
		}
		if ns.Error != "" || prev.Error != "" || ns.NotAvailable != "" || prev.NotAvailable != "" {
			fmt.Fprintf(tw, "%s\t\t%s\t%s\t\t\n", ns.Name, status(prev), status(&ns))
			continue
		}
		for _, nm := range ns.Metrics {
			om := prev.Metric(nm.Name)
			if om == nil || om.Summary.N == 0 || nm.Summary.N == 0 {
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", ns.Name, nm.Name, fmtSummary(om.Summary, nm.Unit),
				fmtSummary(nm.Summary, nm.Unit), fmtChange(om.Summary, nm.Summary), Verdict(om.Summary, nm.Summary, nm.Lower))
		}
	}
	for _, prev := range old.Scenarios {
		if cur.Scenario(prev.Name) == nil {
			fmt.Fprintf(tw, "%s\t\t\t\t\tgone in new\n", prev.Name)
		}
	}
	tw.Flush()
}

func quickTag(r *Run) string {
	if r.Quick {
		return " QUICK"
	}
	return ""
}

// status is a scenario's outcome when it has no figures to compare.
func status(s *ScenarioResult) string {
	switch {
	case s.Error != "":
		return "failed"
	case s.NotAvailable != "":
		return "not available"
	}
	return "ok"
}

func fmtChange(a, b Summary) string {
	if a.Median == 0 || math.IsNaN(a.Median) || math.IsNaN(b.Median) {
		return ""
	}
	return fmt.Sprintf("%+.1f%%", (b.Median/a.Median-1)*100)
}

// MinChange is the smallest relative change of the medians that
// [Verdict] reports, however tight the ranges: figures such as memory
// barely vary between runs, and 1% of them means nothing.
const MinChange = 0.02

// Verdict says whether new differs from old beyond the noise (ranges
// that do not overlap, and a change of at least MinChange), and in which
// direction.
func Verdict(old, cur Summary, lower bool) string {
	if Overlap(old, cur) {
		return "~ (ranges overlap: noise)"
	}
	if old.Median != 0 && math.Abs(cur.Median/old.Median-1) < MinChange {
		return "~ (under 2%)"
	}
	better := cur.Median > old.Median
	if lower {
		better = !better
	}
	if better {
		return "better"
	}
	return "WORSE"
}

// GoBenchFiles returns the raw microbenchmark outputs of both runs (for
// benchstat), or "" where a run has none.
func GoBenchFiles(old, cur *Run) (string, string) {
	raw := func(r *Run) string {
		if r.GoBench == nil {
			return ""
		}
		return strings.TrimSpace(r.GoBench.Raw) + "\n"
	}
	return raw(old), raw(cur)
}
