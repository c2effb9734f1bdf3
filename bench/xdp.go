package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/onramp-net/onramp/testnet"
)

// The XDP pre-filter's scenarios run in the L3 world ([testnet.L3]). The
// edge serves its WireGuard hub on 198.18.100.1:51820; with the
// pre-filter on, it is attached to eth2, the edge's link to "conn2", and
// to eth0, the stock client's: the attacker floods from conn2 through
// eth2, the client's traffic crosses the pre-filter on eth0. The flood
// runs in the harness process (the load CPUs): raw sockets and sendmmsg
// batches of 64 ([testnet.Node.StartUDPFlood]), every datagram from a new
// address of 198.19.0.0/16 (nothing in the world holds it) and a new port.
const (
	xdpAttacker      = "conn2"
	floodGarbageRate = 50000 // random bytes a second at the WireGuard port, l3-flood
	floodInitRate    = 20000 // WireGuard initiations a second, l3-flood
)

var floodFrom4 = netip.MustParsePrefix("198.19.0.0/16")

// xdpYAML is the edge configuration's pre-filter block, or nothing.
func xdpYAML(on bool) string {
	if !on {
		return ""
	}
	return "xdp:\n  interfaces: [eth0, eth2]\n"
}

// startXDPEdge is the edge alone (its WireGuard hub, no peers) on the SUT
// CPUs, with the pre-filter on eth0 and eth2 or not.
func startXDPEdge(on bool) func(ctx context.Context, env *Env) (*Rig, error) {
	return func(ctx context.Context, env *Env) (*Rig, error) {
		n, err := env.Build(ctx, testnet.L3())
		if err != nil {
			return nil, err
		}
		r := &Rig{Net: n, Addr: map[string]string{}}
		r.OnClose(n.Close)
		fail := func(err error) (*Rig, error) { r.Close(); return nil, err }
		dir, err := tempDir(r)
		if err != nil {
			return fail(err)
		}
		w, err := testnet.StartL3WorldYAML(ctx, n, dir, func(data string) string { return testnet.L3EdgeYAML(data, "") + xdpYAML(on) })
		if err != nil {
			return fail(err)
		}
		if on && !strings.Contains(w.Edge.Output(), "xdp pre-filter attached") {
			return fail(fmt.Errorf("the edge did not attach its pre-filter:\n%s", w.Edge.Output()))
		}
		pid := w.Edge.Cmd.Process.Pid
		if err := env.PinSUT(pid); err != nil {
			return fail(err)
		}
		r.Measured = []int{pid}
		r.Roles = map[int]string{pid: "edge"}
		r.State = w
		return r, nil
	}
}

// startL3Flood is the l3 rig (startL3Onramp) with the pre-filter on eth0
// and eth2 or not.
func startL3Flood(on bool) func(ctx context.Context, env *Env) (*Rig, error) {
	return func(ctx context.Context, env *Env) (*Rig, error) {
		r, err := startL3OnrampYAML(ctx, env, xdpYAML(on))
		if err != nil {
			return nil, err
		}
		if w := r.State.(*testnet.L3World); on && !strings.Contains(w.Edge.Output(), "xdp pre-filter attached") {
			r.Close()
			return nil, fmt.Errorf("the edge did not attach its pre-filter:\n%s", w.Edge.Output())
		}
		return r, nil
	}
}

// sumMetric adds up every sample of the metric name in a /metrics text
// whose labels keep says to keep.
func sumMetric(text, name string, keep func(labels string) bool) float64 {
	var sum float64
	for line := range strings.SplitSeq(text, "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		labels, value := "", rest
		if rest[0] == '{' {
			i := strings.IndexByte(rest, '}')
			if i < 0 {
				continue
			}
			labels, value = rest[1:i], rest[i+1:]
		}
		if keep != nil && !keep(labels) {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
			sum += v
		}
	}
	return sum
}

// xdpDrops counts the pre-filter's drops (every reason but pass_*);
// userDrops the WireGuard device's drops before a session (malformed,
// no session, ...).
func xdpDrops(m string) float64 {
	return sumMetric(m, "onramp_edge_xdp_packets_total", func(l string) bool { return !strings.Contains(l, `reason="pass_`) })
}

func userDrops(m string) float64 {
	return sumMetric(m, "onramp_edge_l3_datagram_drops_total", nil)
}

// cpuTimes are the machine's CPU seconds from /proc/stat: busy (all but
// idle and iowait) and softirq, over all CPUs.
type cpuTimes struct{ busy, softirq float64 }

func readCPUTimes() (cpuTimes, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 || fields[0] != "cpu" {
			continue
		}
		var v [8]float64
		for i := range v {
			v[i], _ = strconv.ParseFloat(fields[i+1], 64)
		}
		const hz = 100 // USER_HZ
		// user nice system idle iowait irq softirq steal
		return cpuTimes{busy: (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / hz, softirq: v[6] / hz}, nil
	}
	return cpuTimes{}, fmt.Errorf("no cpu line in /proc/stat")
}

// runGarbagePPS floods the edge's WireGuard port with random bytes from
// conn2 as fast as the sender can for BulkSeconds and reports what the
// edge got rid of a second: in XDP (its drop counters) and in user space
// (the WireGuard device's drops), and what that cost the machine per
// packet.
func runGarbagePPS(ctx context.Context, env *Env, rig *Rig) (Sample, error) {
	w := rig.State.(*testnet.L3World)
	m0, err := w.EdgeMetrics()
	if err != nil {
		return Sample{}, err
	}
	c0, err := readCPUTimes()
	if err != nil {
		return Sample{}, err
	}
	e0, err := TreeCPUSeconds(rig.Measured)
	if err != nil {
		return Sample{}, err
	}
	f, err := rig.Net.Node(xdpAttacker).StartUDPFlood(testnet.FloodOptions{
		Targets:  []testnet.FloodTarget{{Dst: netip.AddrPortFrom(testnet.L3Edge4, testnet.L3EdgePort), Kinds: []testnet.FloodKind{testnet.FloodRandom}}},
		From4:    floodFrom4,
		Duration: time.Duration(env.BulkSeconds) * time.Second,
		Batch:    64,
	})
	if err != nil {
		return Sample{}, err
	}
	select {
	case <-f.Done():
	case <-ctx.Done():
		f.Stop()
		return Sample{}, ctx.Err()
	}
	el := f.Elapsed().Seconds()
	time.Sleep(300 * time.Millisecond) // the edge reads what its socket still holds
	c1, err := readCPUTimes()
	if err != nil {
		return Sample{}, err
	}
	e1, err := TreeCPUSeconds(rig.Measured)
	if err != nil {
		return Sample{}, err
	}
	m1, err := w.EdgeMetrics()
	if err != nil {
		return Sample{}, err
	}
	env.Logf("%v", f)
	sent := float64(f.Total())
	xd, ud := xdpDrops(m1)-xdpDrops(m0), userDrops(m1)-userDrops(m0)
	handled := xd + ud
	if sent == 0 || handled == 0 {
		return Sample{}, fmt.Errorf("garbage flood: %d sent, %.0f dropped by XDP, %.0f by user space", f.Total(), xd, ud)
	}
	// The receive side's CPU per datagram: the softirq (veth's receive,
	// and XDP or the kernel's UDP receive) and the edge process. One CPU
	// doing only that gets rid of 10^6/recv datagrams a second.
	recv := ((c1.softirq - c0.softirq) + (e1 - e0)) / sent * 1e6
	return Sample{Ops: handled, Values: map[string]float64{
		"pps":             handled / el / 1e3,
		"recv_per_pkt":    recv,
		"pps_per_cpu":     1e3 / recv,
		"sent_pps":        sent / el / 1e3,
		"unread":          100 * max(0, sent-handled) / sent,
		"busy_per_pkt":    (c1.busy - c0.busy) / sent * 1e6,
		"softirq_per_pkt": (c1.softirq - c0.softirq) / sent * 1e6,
	}}, nil
}

// floodDuring runs a flood of kind at rate from conn2 at the edge's
// WireGuard port while run runs (it starts half a second before), and adds
// the rate it kept ("flood_kpps"); rate 0 is no flood.
func floodDuring(kind testnet.FloodKind, rate int, run func(context.Context, *Env, *Rig) (Sample, error)) func(context.Context, *Env, *Rig) (Sample, error) {
	return func(ctx context.Context, env *Env, rig *Rig) (Sample, error) {
		if rate == 0 {
			smp, err := run(ctx, env, rig)
			if err == nil {
				smp.Values["flood_kpps"] = 0
			}
			return smp, err
		}
		f, err := rig.Net.Node(xdpAttacker).StartUDPFlood(testnet.FloodOptions{
			Targets:  []testnet.FloodTarget{{Dst: netip.AddrPortFrom(testnet.L3Edge4, testnet.L3EdgePort), Kinds: []testnet.FloodKind{kind}}},
			From4:    floodFrom4,
			Rate:     rate,
			Duration: time.Duration(env.BulkSeconds)*time.Second + 10*time.Second,
			Batch:    16,
		})
		if err != nil {
			return Sample{}, err
		}
		start := time.Now()
		time.Sleep(500 * time.Millisecond)
		smp, err := run(ctx, env, rig)
		n, el := f.Total(), time.Since(start)
		f.Stop()
		env.Logf("%v", f)
		if err != nil {
			return smp, err
		}
		smp.Values["flood_kpps"] = float64(n) / el.Seconds() / 1e3
		return smp, nil
	}
}

func estXDP(env *Env) float64   { return 5 + float64(env.Reps)*(float64(env.BulkSeconds)+1) }
func estFlood(env *Env) float64 { return 6 + float64(env.Reps)*(float64(env.BulkSeconds)+2) }

const (
	setupXDPOn  = "`edge serve` (WireGuard hub only) in `edge` on the SUT CPUs with the XDP pre-filter on eth0 and eth2; random bytes (1-1400) at its WireGuard port from `conn2` as fast as one sender can (raw socket, sendmmsg of 64, a new spoofed source of 198.19.0.0/16 each), the sender in the harness on the load CPUs"
	setupXDPOff = "as xdp/drop-pps without the pre-filter: the edge's WireGuard device reads the garbage and drops it (malformed)"
)

// xdpScenarios are the XDP pre-filter's scenarios (areas "xdp" and
// "l3-flood").
func xdpScenarios() []Scenario {
	ppsMetrics := []Metric{
		{Name: "pps_per_cpu", Unit: "kpkt/s", Note: "garbage datagrams one CPU gets rid of a second at the measured receive cost (10^3 / recv_per_pkt): the figure of the goal, since one sender cannot outrun XDP"},
		{Name: "recv_per_pkt", Unit: "CPU-µs/pkt", Lower: true, Note: "the receive side's CPU per datagram sent: the machine's softirq time (veth's receive, then XDP's drop or the kernel's UDP receive) and the edge process's CPU"},
		{Name: "pps", Unit: "kpkt/s", Note: "garbage datagrams the edge got rid of a second: XDP's drop counters with the pre-filter, the WireGuard device's drop counters (onramp_edge_l3_datagram_drops_total) without; what the kernel dropped for a full socket buffer is not in it (see `unread`)"},
		{Name: "sent_pps", Unit: "kpkt/s", Note: "what the one sender on the load CPU sent a second: with the pre-filter on, XDP drops all of it, so `pps` is bounded by the sender and the ratio to user space is a floor"},
		{Name: "unread", Unit: "%", Lower: true, Note: "sent but neither dropped by XDP nor read by the edge (the socket buffer overflowed)"},
		{Name: "busy_per_pkt", Unit: "CPU-µs/pkt", Lower: true, Note: "the machine's busy CPU time (/proc/stat, all CPUs, the sender's own cost included, alike on both sides) per datagram sent"},
		{Name: "softirq_per_pkt", Unit: "CPU-µs/pkt", Lower: true, Note: "the machine's softirq time per datagram sent: veth receives in the softirq of the sending CPU, where XDP runs too"},
		{Name: "cpu_per_kop", Unit: "CPU-µs/pkt", Lower: true, Note: "the edge process's CPU per datagram it got rid of"},
	}
	floodBulk := append(append([]Metric{}, l3BulkMetrics...),
		Metric{Name: "edge_cpu_per_gb", Unit: "CPU-s/GB", Lower: true, Note: "the edge process alone"},
		Metric{Name: "flood_kpps", Unit: "kpkt/s", Note: "the flood's rate during the run"})
	goal := func() []Goal { return []Goal{{Peer: "l3-flood/bulk1", Metric: "throughput", Op: ">=", Ratio: 0.8}} }
	noFlood := runBulk(1)
	garbage := fmt.Sprintf("random bytes (1-1400) at the edge's WireGuard port from `conn2`, %d a second, new spoofed source each", floodGarbageRate)
	initiations := fmt.Sprintf("WireGuard initiations (148 bytes, random content) at the edge's WireGuard port from `conn2`, %d a second, new spoofed source each", floodInitRate)
	return []Scenario{
		{Name: "xdp/drop-pps", Area: "xdp", Label: "XDP pre-filter drops garbage", Onramp: true, Setup: setupXDPOn,
			Goals:   []Goal{{Peer: "xdp/userspace-pps", Metric: "pps_per_cpu", Op: ">=", Ratio: 5}},
			Metrics: ppsMetrics, Estimate: estXDP, Start: startXDPEdge(true), Run: runGarbagePPS},
		{Name: "xdp/userspace-pps", Area: "xdp", Label: "user space reads and drops garbage (no XDP)", Setup: setupXDPOff,
			PeerOf:  []string{"xdp/drop-pps"},
			Metrics: ppsMetrics, Estimate: estXDP, Start: startXDPEdge(false), Run: runGarbagePPS},

		{Name: "l3-flood/bulk1", Area: "l3-flood", Label: "no flood (pre-filter on)", Setup: setupL3Onramp + "; XDP pre-filter on eth0 and eth2, no flood",
			PeerOf:  []string{"l3-flood/bulk1-garbage-xdp", "l3-flood/bulk1-garbage-noxdp", "l3-flood/bulk1-handshake-xdp", "l3-flood/bulk1-handshake-noxdp"},
			Metrics: floodBulk, Estimate: estFlood, Start: startL3Flood(true), Run: withEdgeCPU(floodDuring(testnet.FloodRandom, 0, noFlood))},
		{Name: "l3-flood/bulk1-garbage-xdp", Area: "l3-flood", Label: "garbage flood, pre-filter on", Onramp: true, Setup: setupL3Onramp + "; XDP pre-filter on eth0 and eth2; " + garbage,
			Goals: goal(), Metrics: floodBulk, Estimate: estFlood, Start: startL3Flood(true), Run: withEdgeCPU(floodDuring(testnet.FloodRandom, floodGarbageRate, noFlood))},
		{Name: "l3-flood/bulk1-garbage-noxdp", Area: "l3-flood", Label: "garbage flood, pre-filter off", Onramp: true, Setup: setupL3Onramp + "; no pre-filter; " + garbage,
			Metrics: floodBulk, Estimate: estFlood, Start: startL3Flood(false), Run: withEdgeCPU(floodDuring(testnet.FloodRandom, floodGarbageRate, noFlood))},
		{Name: "l3-flood/bulk1-handshake-xdp", Area: "l3-flood", Label: "handshake flood, pre-filter on", Onramp: true, Setup: setupL3Onramp + "; XDP pre-filter on eth0 and eth2; " + initiations,
			Goals: goal(), Metrics: floodBulk, Estimate: estFlood, Start: startL3Flood(true), Run: withEdgeCPU(floodDuring(testnet.FloodInitiation, floodInitRate, noFlood))},
		{Name: "l3-flood/bulk1-handshake-noxdp", Area: "l3-flood", Label: "handshake flood, pre-filter off", Onramp: true, Setup: setupL3Onramp + "; no pre-filter; " + initiations,
			Metrics: floodBulk, Estimate: estFlood, Start: startL3Flood(false), Run: withEdgeCPU(floodDuring(testnet.FloodInitiation, floodInitRate, noFlood))},
	}
}
