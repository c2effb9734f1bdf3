// Package bench is the benchmark harness behind make bench: scenarios that
// run onramp and its peers (the kernel path, raw quic-go, raw TLS, HAProxy,
// socat) in testnet namespaces, the measurements of the processes under
// test (/proc), the results JSON and BENCHMARKS.md with its charts.
//
// A scenario is a declarative [Scenario] value; [Scenarios] lists them all.
// The pure parts (statistics, parsers, the report) are tested without
// namespaces; running scenarios needs root.
package bench

import (
	"encoding/json"
	"math"
	"slices"
)

// Summary is the median and range of a metric's samples (one per run).
type Summary struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// Summarize returns the median, minimum and maximum of xs. NaN samples
// (a measurement that does not apply) are skipped; with none left the
// summary has N == 0 and NaN figures.
func Summarize(xs []float64) Summary {
	v := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return Summary{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	slices.Sort(v)
	return Summary{N: len(v), Median: Median(v), Min: v[0], Max: v[len(v)-1]}
}

// Median of sorted values: the middle one, or the mean of the two middle
// ones for an even count. NaN for none.
func Median(sorted []float64) float64 {
	n := len(sorted)
	switch {
	case n == 0:
		return math.NaN()
	case n%2 == 1:
		return sorted[n/2]
	default:
		return (sorted[n/2-1] + sorted[n/2]) / 2
	}
}

// Percentile returns the p-th percentile (0..100) of sorted values by the
// nearest-rank method: the smallest value such that at least p% of the
// values are less than or equal to it. Percentile(s, 100) is the maximum;
// Percentile(s, 0) the minimum. NaN for none.
func Percentile(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	if p <= 0 {
		return sorted[0]
	}
	if p >= 100 {
		return sorted[n-1]
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	if rank < 1 {
		rank = 1
	}
	return sorted[rank-1]
}

// Overlap reports whether the ranges [a.Min, a.Max] and [b.Min, b.Max]
// overlap: a difference between the medians is then within the noise.
func Overlap(a, b Summary) bool {
	return a.N > 0 && b.N > 0 && a.Min <= b.Max && b.Min <= a.Max
}

type summaryJSON struct {
	N      int     `json:"n"`
	Median JSONNum `json:"median"`
	Min    JSONNum `json:"min"`
	Max    JSONNum `json:"max"`
}

// MarshalJSON writes a summary with no samples as nulls.
func (s Summary) MarshalJSON() ([]byte, error) {
	return json.Marshal(summaryJSON{s.N, JSONNum(s.Median), JSONNum(s.Min), JSONNum(s.Max)})
}

// UnmarshalJSON reads nulls as NaN.
func (s *Summary) UnmarshalJSON(b []byte) error {
	var j summaryJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*s = Summary{j.N, float64(j.Median), float64(j.Min), float64(j.Max)}
	return nil
}
