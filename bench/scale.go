package bench

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/onramp-net/onramp/testnet"
)

// The scale area answers issue 15's goal: the aggregate throughput of 8
// streams over 4 tunnel connections against 1, and the CPU per GB as
// streams and connections grow. Each cell is a tunnel whose connector
// keeps C connections (--connections C) measured by iperf3 -P S; the
// cells of one protocol run interleaved, all rigs up at once.

var scaleArea = Area{Key: "l4-scale", Only: "^l4-scale/", Title: "L4 tunnel: streams and tunnel connections",
	Compare: []string{"throughput", "cpu_per_gb"},
	Intro: "iperf3 -P S (S streams, user to origin) through a tunnel whose connector keeps C connections to the edge (`connector tunnel run --connections C`), " +
		"S in {1, 8, 16} for QUIC and {1, 8} for HTTP/2, C in {1, 4}. The edge spreads a tunnel's new streams over its connections (`stream_spread`), by default after its recent streams: " +
		"mostly bulk, as here, over all of them, each new stream to the connection with the fewest open streams " +
		"(iperf3's control connection is a stream too, so with 8 streams over 4 connections each carries 2 data streams); mostly small, over one per core (one here). " +
		"The cells *kept on one* (`stream_spread: 1`) put every stream on one of the 4 connections: what bulk would lose if the default ignored the traffic. " +
		"The cells of a protocol run interleaved (every rig up, each repetition runs every cell once). " +
		"Ratios are against 1 stream over 1 connection, and 4 connections against 1 at the same streams; the goals: 8 streams over 4 connections at least as fast as over 1, " +
		"and CPU per GB flat (within 10%) from 1 stream over 1 connection to 8 over 4. " +
		"**What 2 cores allow:** edge and connector share the one SUT CPU (the other runs iperf3, the origins and the harness), so more connections cannot add a core. " +
		"`cpus` (CPU-seconds of edge and connector per second) near 1.00 says that CPU is full: throughput is then 8 / `cpu_per_gb` Gbit/s and the two columns say the same thing; " +
		"`sut_busy` and `load_busy` are each side's CPU busy time per second from /proc/stat (the machine may be shared: other work shows there too); " +
		"`sut_busy` above `cpus` is kernel work on the SUT CPU not charged to edge or connector (TCP receive softirqs), and when `load_busy` is near 1.00 as well, " +
		"iperf3 at both ends fills the load CPU and the cell measures the machine rather than the tunnel alone (HTTP/2, at 3 to 4 Gbit/s, gets there). " +
		"The grid shows what more streams and more connections cost or save per byte on one core, not how they spread over cores; that needs a machine with SUT CPUs to spare (`-sut-cpus`). " +
		"With 4 connections the connector spreads them over the token's two edge addresses (2 over IPv4, 2 over IPv6); 1 connection is IPv4."}

// scaleCell is one point of the grid.
type scaleCell struct {
	Proto   string // "quic" or "http2"
	Streams int    // iperf3 -P
	Conns   int    // connector --connections
	One     bool   // the edge keeps streams on one connection (stream_spread: 1)
}

// scaleGrid is every cell, by protocol, then streams, then connections.
func scaleGrid() []scaleCell {
	var out []scaleCell
	for _, p := range []struct {
		proto   string
		streams []int
	}{{"quic", []int{1, 8, 16}}, {"http2", []int{1, 8}}} {
		for _, s := range p.streams {
			for _, c := range []int{1, 4} {
				out = append(out, scaleCell{Proto: p.proto, Streams: s, Conns: c})
			}
		}
		// What keeping 8 bulk streams on one of the 4 connections costs.
		out = append(out, scaleCell{Proto: p.proto, Streams: 8, Conns: 4, One: true})
	}
	return out
}

func (c scaleCell) name() string {
	n := fmt.Sprintf("%s/%s-s%d-c%d", scaleArea.Key, c.Proto, c.Streams, c.Conns)
	if c.One {
		n += "-one"
	}
	return n
}

// spread is the cell's stream_spread (0: the edge's default).
func (c scaleCell) spread() int {
	if c.One {
		return 1
	}
	return 0
}

func (c scaleCell) baseline() bool { return c.Streams == 1 && c.Conns == 1 && !c.One }

func (c scaleCell) label() string {
	proto := map[string]string{"quic": "QUIC", "http2": "HTTP/2"}[c.Proto]
	l := fmt.Sprintf("%s: %s, %s", proto, plural(c.Streams, "stream"), plural(c.Conns, "connection"))
	if c.baseline() {
		l += " (baseline)"
	}
	if c.One {
		l += ", kept on one"
	}
	return l
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// scaleMaxCPUGrowth is how much CPU per GB may grow from the baseline to
// 8 streams over 4 connections and still count as flat.
const scaleMaxCPUGrowth = 1.10

var scaleMetrics = []Metric{
	{Name: "throughput", Unit: "Gbit/s", Note: "the iperf3 receiver's figure, all streams together"},
	{Name: "cpu_per_gb", Unit: "CPU-s/GB", Lower: true, Note: "utime+stime of edge and connector per 10^9 payload bytes"},
	{Name: "cpus", Unit: "CPUs", Note: "CPU-seconds of edge and connector per second of the run (iperf3's start and end included, so a little under the transfer's): " +
		"1.00 is the one SUT CPU of a 2-core machine full; not better or worse, it says whether the CPU is the bound"},
	sutBusyMetric, loadBusyMetric,
	{Name: "slowest", Unit: "%", Note: "the slowest stream's received bytes as a share of an even split (100: all streams alike), from iperf3's per-stream figures"},
	{Name: "rss_peak", Unit: "MiB", Lower: true, Note: "sum of VmHWM of edge and connector"},
	{Name: "retransmits", Unit: "", Lower: true, Note: "TCP retransmits iperf3 counted on the sender"},
}

const setupScale = "edge in `edge`, connector in `conn` with --connections C (both on the SUT CPUs); iperf3 -s in `origin`, iperf3 -c -P S in `user`"

// scaleScenarios are the grid's scenarios (area "l4-scale"). Every cell but
// the baseline is onramp's figure compared with the baseline; a cell over
// one connection is also the peer of the same streams over four.
func scaleScenarios() []Scenario {
	grid := scaleGrid()
	var out []Scenario
	for _, c := range grid {
		s := Scenario{Name: c.name(), Area: scaleArea.Key, Label: c.label(), Onramp: !c.baseline(), Setup: setupScale,
			Metrics: scaleMetrics, Interleave: scaleArea.Key + "/" + c.Proto, QuickReps: 1, Estimate: estScale,
			Start: startTunnelSpread(c.Proto, c.Conns, c.spread()), Run: runScale(c)}
		for _, o := range grid {
			if o.Proto != c.Proto || o == c {
				continue
			}
			if c.baseline() || (c.Conns == 1 && o.Streams == c.Streams) ||
				(o.One && c.Streams == o.Streams && c.Conns == o.Conns) {
				s.PeerOf = append(s.PeerOf, o.name())
			}
		}
		if c.Streams == 8 && c.Conns == 4 && !c.One {
			one := scaleCell{Proto: c.Proto, Streams: 8, Conns: 1}
			base := scaleCell{Proto: c.Proto, Streams: 1, Conns: 1}
			s.Goals = []Goal{
				{Peer: one.name(), Metric: "throughput", Op: ">=", Ratio: 1.00},
				{Peer: base.name(), Metric: "cpu_per_gb", Op: "<=", Ratio: scaleMaxCPUGrowth},
			}
		}
		out = append(out, s)
	}
	return out
}

func estScale(env *Env) float64 {
	reps := env.Reps
	if env.Quick {
		reps = 1
	}
	return 3 + float64(reps)*(float64(env.BulkSeconds)+1.5)
}

// runScale is iperf3 -P c.Streams through the rig's tunnel, which must
// have c.Conns connections at the edge before and after the run.
func runScale(c scaleCell) func(ctx context.Context, env *Env, rig *Rig) (Sample, error) {
	return func(ctx context.Context, env *Env, rig *Rig) (Sample, error) {
		tr, ok := rig.State.(*testnet.TunnelRig)
		if !ok {
			return Sample{}, fmt.Errorf("not a tunnel rig")
		}
		if err := checkEdgeConns(tr, c.Proto, c.Conns, "before the run"); err != nil {
			return Sample{}, err
		}
		busy := measureBusy(env)
		res, err := iperfBulk(ctx, env, rig, c.Streams)
		if err != nil {
			return Sample{}, err
		}
		v := map[string]float64{}
		busy(v)
		if err := checkEdgeConns(tr, c.Proto, c.Conns, "after the run"); err != nil {
			return Sample{}, err
		}
		if res.Streams != c.Streams || len(res.StreamBytes) != c.Streams {
			return Sample{}, fmt.Errorf("iperf3 ran %d streams (%d reported), want %d", res.Streams, len(res.StreamBytes), c.Streams)
		}
		v["throughput"] = res.BitsPerSecond / 1e9
		v["retransmits"] = float64(res.Retransmits)
		v["slowest"] = SlowestShare(res.StreamBytes) * 100
		return Sample{Bytes: res.Bytes, Values: v}, nil
	}
}

// The busy time of the SUT and the load CPUs during a run (measureBusy).
var (
	sutBusyMetric  = Metric{Name: "sut_busy", Unit: "CPUs", Note: "busy time of the SUT CPUs per second during iperf3 (/proc/stat): the processes under test, kernel work not charged to them, and anything else on the machine that ran there"}
	loadBusyMetric = Metric{Name: "load_busy", Unit: "CPUs", Note: "busy time of the load CPUs per second during iperf3: the load generators (iperf3, a stock WireGuard client), the harness, the kernel's work for them; at their count the load side, not the system under test, is the bound"}
)

// measureBusy starts a reading of the SUT and load CPUs; the function it
// returns reads them again and sets sut_busy and load_busy in v (NaN where
// a reading failed or the CPUs are not pinned).
func measureBusy(env *Env) func(v map[string]float64) {
	sut0, sutErr := readBusy(env.SUTCPUs)
	load0, loadErr := readBusy(env.LoadCPUs)
	return func(v map[string]float64) {
		sut1, sutErr1 := readBusy(env.SUTCPUs)
		load1, loadErr1 := readBusy(env.LoadCPUs)
		v["sut_busy"] = nanIf(sutErr != nil || sutErr1 != nil, sut1.busyCPUs(sut0))
		v["load_busy"] = nanIf(loadErr != nil || loadErr1 != nil, load1.busyCPUs(load0))
	}
}

// cpuSet is a reading of some CPUs' ticks.
type cpuSet struct {
	n     int
	ticks CPUTicks
}

// readBusy reads the ticks of the CPUs in list; an empty list (nothing
// pinned) is an error, so the figure is not measured.
func readBusy(list string) (cpuSet, error) {
	if list == "" {
		return cpuSet{}, fmt.Errorf("no CPUs")
	}
	cpus, err := ParseCPUList(list)
	if err != nil {
		return cpuSet{}, err
	}
	t, err := ReadCPUTicks(list)
	return cpuSet{n: len(cpus), ticks: t}, err
}

// busyCPUs is how many of the CPUs were busy on average since earlier.
func (s cpuSet) busyCPUs(earlier cpuSet) float64 {
	d := s.ticks.Sub(earlier.ticks)
	if d.Total == 0 || s.n == 0 {
		return math.NaN()
	}
	return float64(d.Busy) / float64(d.Total) * float64(s.n)
}

// SlowestShare is the smallest of bytes over their mean: 1 when every
// stream moved as much, 0 when one moved nothing. NaN without streams.
func SlowestShare(bytes []float64) float64 {
	if len(bytes) == 0 {
		return math.NaN()
	}
	lo, sum := math.Inf(1), 0.0
	for _, b := range bytes {
		lo = min(lo, b)
		sum += b
	}
	if sum <= 0 {
		return math.NaN()
	}
	return lo / (sum / float64(len(bytes)))
}

// edgeConns is how many connector connections of protocol the edge counts.
func edgeConns(tr *testnet.TunnelRig, protocol string) (int, error) {
	text, err := tr.EdgeMetrics()
	if err != nil {
		return 0, fmt.Errorf("edge metrics: %w", err)
	}
	if !strings.Contains(text, "onramp_edge_connector_connections") {
		return 0, fmt.Errorf("edge metrics: no onramp_edge_connector_connections")
	}
	return int(testnet.MetricValue(text, "onramp_edge_connector_connections", fmt.Sprintf(`protocol=%q`, protocol))), nil
}

func checkEdgeConns(tr *testnet.TunnelRig, protocol string, want int, when string) error {
	n, err := edgeConns(tr, protocol)
	if err != nil {
		return err
	}
	if n != want {
		return fmt.Errorf("%s the edge has %d %s connector connections, want %d", when, n, protocol, want)
	}
	return nil
}

// waitEdgeConns waits until the edge counts want connector connections of
// protocol.
func waitEdgeConns(ctx context.Context, tr *testnet.TunnelRig, protocol string, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		n, err := edgeConns(tr, protocol)
		if err == nil && n == want {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return err
			}
			return fmt.Errorf("the edge has %d %s connector connections after %v, want %d", n, protocol, timeout, want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
