package bench

import (
	"math"
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

// A profile records the SUT CPUs when the run pins to them, so that a
// process the run starts there (a raw transport's sender) is in it, and
// the processes under test otherwise.
func TestPerfRecordArgs(t *testing.T) {
	got := strings.Join(perfRecordArgs("1", []int{10, 20}, "d"), " ")
	if want := "record -q -g -F 999 -C 1 -o d"; got != want {
		t.Errorf("pinned: %q, want %q", got, want)
	}
	got = strings.Join(perfRecordArgs("", []int{10, 20}, "d"), " ")
	if want := "record -q -g -F 999 -p 10,20 -o d"; got != want {
		t.Errorf("unpinned: %q, want %q", got, want)
	}
}

// A perf report's samples are summed by layer, the idle task left out;
// the table has each layer's median over the repetitions, as a share and
// as that share of each repetition's figure.
func TestLayerTable(t *testing.T) {
	report := `# comment
    40.00%    400  edge       edge               [.] crypto/internal/fips140/aes/gcm.gcmAesEnc.abi0
    20.00%    200  connector  [kernel.kallsyms]  [k] pvm_irq_enable
    10.00%    100  connector  [kernel.kallsyms]  [k] _copy_to_iter
    10.00%    100  connector  [kernel.kallsyms]  [k] tcp_sendmsg_locked
     5.00%     50  edge       edge               [.] github.com/quic-go/quic-go.(*Conn).run
     5.00%     50  edge       edge               [.] runtime.memmove
     5.00%     50  swapper    [kernel.kallsyms]  [k] default_idle
     3.00%     30  connector  connector          [.] github.com/onramp-net/onramp/l4proxy/internal/pipe.(*copier).loop
     2.00%     20  haproxy    haproxy            [.] process_stream
`
	r := layerShares(report)
	if r.samples != 950 {
		t.Errorf("samples %d, want 950 (the idle task's 50 left out)", r.samples)
	}
	if _, ok := r.shares["other: swapper"]; ok {
		t.Errorf("the idle task is counted: %v", r.shares)
	}
	r.per, r.unit = 2.0, "CPU-s/GB"
	// A second repetition on a slower machine: the same shares, a
	// higher figure; a third where crypto took a larger share.
	slow := r
	slow.per = 4.0
	other := layerShares(strings.Replace(report, "    400  edge", "    900  edge", 1))
	other.per, other.unit = 3.0, "CPU-s/GB"
	got := layerTable([]layerRep{r, slow, other})
	for _, want := range []string{
		"| layer | share | CPU-s/GB |",
		"| crypto (AEAD seal and open) | 42.1% | 1.68 |", // shares 42.1, 42.1, 62.1%; of 2, 4, 3: 0.84, 1.68, 1.86
		"| kernel: pvm_irq_enable (returns from system calls and interrupts on this guest) | 21.1% | 0.421 |",
		"| kernel: copies to and from user space | 10.5% | 0.211 |",
		"| quic-go | 5.3% | 0.105 |",
		"| onramp | 3.2% | 0.0632 |",
		"| other: haproxy | 2.1% | 0.0421 |",
		"(3 repetitions, median 950 samples each)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	if i, j := strings.Index(got, "crypto"), strings.Index(got, "pvm_irq_enable"); i > j {
		t.Errorf("not by share:\n%s", got)
	}
	// Without a CPU figure (a failed repetition's), shares only.
	r.per = math.NaN()
	if got := layerTable([]layerRep{r}); !strings.Contains(got, "| crypto (AEAD seal and open) | 42.1% |\n") {
		t.Errorf("without a figure: %s", got)
	}
	if got := layerTable(nil); got != "" {
		t.Errorf("no repetitions: %q", got)
	}
}
