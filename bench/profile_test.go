package bench

import (
	"strings"
	"testing"
)

// A /metrics page as the Prometheus Go collector writes it.
const metricsPage = `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 5047
go_memstats_heap_inuse_bytes 3.0154752e+07
go_memstats_stack_inuse_bytes 1.1042816e+07
go_memstats_heap_alloc_bytes 2.4894032e+07
go_memstats_heap_objects 123456
go_gc_duration_seconds_count 5
onramp_edge_streams 5000
`

func TestParseMemstats(t *testing.T) {
	m := parseMemstats(metricsPage)
	want := map[string]float64{
		"go_goroutines":                 5047,
		"go_memstats_heap_inuse_bytes":  3.0154752e+07,
		"go_memstats_stack_inuse_bytes": 1.1042816e+07,
		"go_memstats_heap_alloc_bytes":  2.4894032e+07,
	}
	if len(m) != len(want) {
		t.Errorf("parsed %v, want the %d memory figures only", m, len(want))
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
}

func TestMemstatsTable(t *testing.T) {
	before := map[string]float64{"rss": 20 << 20, "go_goroutines": 47, "go_memstats_heap_inuse_bytes": 5 << 20,
		"go_memstats_stack_inuse_bytes": 1 << 20}
	held := map[string]float64{"rss": 70 << 20, "go_goroutines": 5047, "go_memstats_heap_inuse_bytes": 30 << 20,
		"go_memstats_stack_inuse_bytes": 11 << 20, "go_memstats_sys_bytes": 60 << 20}
	got := memstatsTable(before, held, 5000)
	for _, row := range []string{
		"| rss | 20.0 MiB | 70.0 MiB | 10486 B |",
		"| goroutines | 47 | 5047 | 1.00 |",
		"| heap_inuse | 5.0 MiB | 30.0 MiB | 5243 B |",
		"| stack_inuse | 1.0 MiB | 11.0 MiB | 2097 B |",
		"| sys | ? | 60.0 MiB | ? |", // no figure before: no difference
	} {
		if !strings.Contains(got, row+"\n") {
			t.Errorf("table lacks %q:\n%s", row, got)
		}
	}
	if strings.Index(got, "| rss") > strings.Index(got, "| heap_inuse") {
		t.Errorf("rss not first:\n%s", got)
	}
}
