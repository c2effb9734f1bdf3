package testnet

import (
	"strings"
)

// MetricFamilies returns the metric families of a Prometheus /metrics text
// by name, with their type (counter, gauge, histogram, summary, untyped),
// from its # TYPE lines and, for samples without one, their names.
func MetricFamilies(text string) map[string]string {
	fams := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			if f := strings.Fields(rest); len(f) == 2 {
				fams[f[0]] = f[1]
			}
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		if _, ok := fams[name]; !ok && !isSeriesOfFamily(fams, name) {
			fams[name] = "untyped"
		}
	}
	return fams
}

// Exported reports whether the series name belongs to one of fams: a
// family's own name, or a histogram's or summary's _bucket, _sum or
// _count series.
func Exported(fams map[string]string, name string) bool {
	if _, ok := fams[name]; ok {
		return true
	}
	return isSeriesOfFamily(fams, name)
}

func isSeriesOfFamily(fams map[string]string, name string) bool {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		if t := fams[base]; t == "histogram" || (t == "summary" && suffix != "_bucket") {
			return true
		}
	}
	return false
}

// MetricSeries returns the label sets of the samples of a Prometheus
// /metrics text, by series name. A line it cannot parse is skipped.
func MetricSeries(text string) map[string][]map[string]string {
	series := map[string][]map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, hasLabels := strings.Cut(line, "{")
		if !hasLabels {
			name, _, _ = strings.Cut(line, " ")
			series[name] = append(series[name], map[string]string{})
			continue
		}
		if labels, ok := parseLabels(rest); ok {
			series[name] = append(series[name], labels)
		}
	}
	return series
}

// parseLabels parses `a="x",b="y\"z"} 1` up to the closing brace.
func parseLabels(s string) (map[string]string, bool) {
	labels := map[string]string{}
	for {
		s = strings.TrimLeft(s, ", ")
		if strings.HasPrefix(s, "}") {
			return labels, true
		}
		name, rest, ok := strings.Cut(s, "=\"")
		if !ok {
			return nil, false
		}
		var v strings.Builder
		i := 0
		for ; i < len(rest) && rest[i] != '"'; i++ {
			if rest[i] == '\\' && i+1 < len(rest) {
				i++
				if rest[i] == 'n' {
					v.WriteByte('\n')
					continue
				}
			}
			v.WriteByte(rest[i])
		}
		if i == len(rest) {
			return nil, false
		}
		labels[strings.TrimSpace(name)] = v.String()
		s = rest[i+1:]
	}
}
