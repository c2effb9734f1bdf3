package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/onramp-net/onramp/testnet"
)

// The steering scenarios: 64 WireGuard clients (stock wireguard-go
// devices in memory in bench/cmd/wgload, one UDP socket and session each,
// on the load CPUs) send 64-byte UDP packets through the edge (SUT CPUs)
// to a connector subnet whose connector is one more stock device in
// wgload. The edge runs one or two receive loops, with its steering
// program on (edge.yml l3.steering, the default).

const steerClients = 64

// steerState is what a steering rig's runs need.
type steerState struct {
	world       *testnet.L3World
	clients     string // directory of the clients' wg-quick configurations
	site        string // the connector's l3.yml
	loops       int
	edgeMetrics func() (string, error)
}

func startSteer(loops int) func(context.Context, *Env) (*Rig, error) {
	return func(ctx context.Context, env *Env) (*Rig, error) {
		n, err := env.Build(ctx, testnet.L3())
		if err != nil {
			return nil, err
		}
		r := &Rig{Net: n, Client: n.Node("client"), Addr: map[string]string{}}
		r.OnClose(n.Close)
		fail := func(err error) (*Rig, error) { r.Close(); return nil, err }
		dir, err := tempDir(r)
		if err != nil {
			return fail(err)
		}
		w, err := testnet.StartL3WorldYAML(ctx, n, dir, func(data string) string {
			return testnet.L3EdgeYAML(data, "") + fmt.Sprintf("  loops: %d\n", loops)
		})
		if err != nil {
			return fail(err)
		}
		st := &steerState{world: w, clients: filepath.Join(dir, "clients"), site: filepath.Join(dir, "site.yml"), loops: loops, edgeMetrics: w.EdgeMetrics}
		if err := os.MkdirAll(st.clients, 0o700); err != nil {
			return fail(err)
		}
		if _, err := w.AddConnector(ctx, n.Node("client"), "site", st.site, l3LanNet); err != nil {
			return fail(err)
		}
		for i := range steerClients {
			conf, err := w.EdgeCLI(ctx, "l3", "client", "add", fmt.Sprint("c", i))
			if err != nil {
				return fail(err)
			}
			if err := os.WriteFile(filepath.Join(st.clients, fmt.Sprintf("c%02d.conf", i)), []byte(conf), 0o600); err != nil {
				return fail(err)
			}
		}
		edge := w.Edge.Cmd.Process.Pid
		if err := env.PinSUT(edge); err != nil {
			return fail(err)
		}
		r.Measured = []int{edge}
		r.Roles = map[int]string{edge: "edge"}
		r.State = st
		return r, nil
	}
}

// wgloadResult is bench/cmd/wgload's output.
type wgloadResult struct {
	Clients    int     `json:"clients"`
	Sent       float64 `json:"sent"`
	Seconds    float64 `json:"seconds"`
	CPUSeconds float64 `json:"cpu_seconds"`
}

// steeredPerLoop reads the datagrams the steering program put on each
// loop socket (IPv4) from the edge's metrics.
func steeredPerLoop(text string, loops int) []float64 {
	out := make([]float64, loops)
	for i := range out {
		out[i] = testnet.MetricValue(text, "onramp_edge_l3_steered_datagrams_total", `family="ipv4"`, fmt.Sprintf(`socket="loop%d"`, i+1))
	}
	return out
}

// runSteer runs wgload for BulkSeconds and reports the packets per second
// the edge forwarded from the clients to the connector (its counters), how
// evenly the loops' sockets shared them, and the load generator's CPU.
func runSteer(ctx context.Context, env *Env, rig *Rig) (Sample, error) {
	st := rig.State.(*steerState)
	m0, err := st.edgeMetrics()
	if err != nil {
		return Sample{}, err
	}
	args := []string{"-clients", st.clients, "-sink", st.site, "-dst", hostPort(l3LanIP, 9),
		"-len", fmt.Sprint(l3PPSLen), "-d", (time.Duration(env.BulkSeconds) * time.Second).String()}
	out, err := output(env, rig.Client.Command(ctx, env.Bins["wgload"], args...))
	if err != nil {
		return Sample{}, err
	}
	var res wgloadResult
	if err := json.Unmarshal(out, &res); err != nil {
		return Sample{}, fmt.Errorf("wgload: %w: %s", err, out)
	}
	m1, err := st.edgeMetrics()
	if err != nil {
		return Sample{}, err
	}
	// The edge's counters span a little more than wgload's window (the
	// warm-up and the reads): the rate is over the window, a slight
	// overestimate for both loop counts alike.
	fwd := testnet.MetricValue(m1, "onramp_edge_l3_tx_packets_total", `kind="connector"`) -
		testnet.MetricValue(m0, "onramp_edge_l3_tx_packets_total", `kind="connector"`)
	if res.Seconds <= 0 || fwd <= 0 {
		return Sample{}, fmt.Errorf("the edge forwarded nothing: wgload says %s", out)
	}
	before, after := steeredPerLoop(m0, st.loops), steeredPerLoop(m1, st.loops)
	var total float64
	for i := range after {
		after[i] -= before[i]
		total += after[i]
	}
	dev := 0.0 // the largest departure of a loop's share from 1/loops, as a fraction of it
	for _, n := range after {
		if total > 0 {
			dev = math.Max(dev, math.Abs(n*float64(st.loops)/total-1))
		}
	}
	env.Logf("wgload: %+v; datagrams per loop socket %v", res, after)
	return Sample{Ops: fwd, Values: map[string]float64{
		"pps":       fwd / res.Seconds / 1e3,
		"share_dev": dev * 100,
		"load_cpu":  res.CPUSeconds / res.Seconds,
		"sent_pps":  res.Sent / res.Seconds / 1e3,
	}}, nil
}

var steerMetrics = []Metric{
	{Name: "pps", Unit: "kpkt/s", Note: "64-byte UDP packets a second the edge forwarded from 64 WireGuard clients (one flow each) to the connector (its counters)"},
	{Name: "cpu_per_kop", Unit: "CPU-µs/pkt", Lower: true, Note: "the edge's CPU per packet delivered"},
	{Name: "share_dev", Unit: "%", Lower: true, Note: "the largest departure of a loop socket's share of the datagrams from 1/loops (the steering program's counters)"},
	{Name: "load_cpu", Unit: "CPUs", Note: "the load generator's CPU use (wgload: the 64 clients' encryption), to show whether the load or the edge is the bound"},
	{Name: "sent_pps", Unit: "kpkt/s", Note: "packets the clients handed their devices per second"},
}

const setupSteer = "64 stock wireguard-go clients and a stock wireguard-go connector in memory in bench/cmd/wgload in `client` (load CPUs) -> `edge serve` WireGuard hub in `edge` (SUT CPUs), l3.steering on, l3.loops 1 or 2"

// steerScenarios are the steering scenarios (area "steer").
func steerScenarios() []Scenario {
	est := func(env *Env) float64 { return 10 + float64(env.Reps*(env.BulkSeconds+2)) }
	return []Scenario{
		{Name: "steer/wg64-loops2", Area: "steer", Label: "onramp edge, two loops, steered", Onramp: true, Setup: setupSteer,
			Goals:   []Goal{{Peer: "steer/wg64-loops1", Metric: "pps", Op: ">=", Ratio: 1.6}},
			Metrics: steerMetrics, Estimate: est, Start: startSteer(2), Run: runSteer},
		{Name: "steer/wg64-loops1", Area: "steer", Label: "onramp edge, one loop", Setup: setupSteer,
			PeerOf:  []string{"steer/wg64-loops2"},
			Metrics: steerMetrics, Estimate: est, Start: startSteer(1), Run: runSteer},
	}
}
