package bench

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/onramp-net/onramp/l3router/l3config"
	"github.com/onramp-net/onramp/testnet"
)

// The L3 worlds are [testnet.L3]: a stock WireGuard client (wireguard-go
// from go.mod, set up by wg-quick) in "client", iperf3 -s in "lan" behind
// the connector host "conn". The load (iperf3 client, the client's
// wireguard-go) runs on the load CPUs; the processes under test on the SUT
// CPUs.
const (
	l3LanIP     = "198.18.130.2"
	l3ConnIP    = "198.18.120.2"
	l3ClientIP  = "198.18.110.2"
	l3ClientVIP = "198.18.160.2" // the client's virtual address (pool 198.18.160.0/20)
	l3ConnVIP   = "198.18.160.3" // the connector host's tunnel address in the stock world
	l3LanNet    = "198.18.130.0/24"
	l3WGPort    = 51820
	l3PPSLen    = 64 // UDP payload of the packet-rate runs
)

// l3Iface returns a machine-unique WireGuard interface name: wireguard-go's
// control sockets are not per namespace, and the rigs of a goal group are
// up together.
func l3Iface(role string) string {
	return fmt.Sprintf("ob%s%d-%d", role, os.Getpid()%100000, l3IfaceSeq.Add(1)%1000)
}

var l3IfaceSeq atomic.Int64

// newL3Rig builds the L3 world with iperf3 -s in "lan".
func newL3Rig(ctx context.Context, env *Env) (*Rig, error) {
	n, err := env.Build(ctx, testnet.L3())
	if err != nil {
		return nil, err
	}
	r := &Rig{Net: n, Client: n.Node("client"), Addr: map[string]string{}}
	r.OnClose(n.Close)
	if err := testnet.WGQuickAvailable(); err != nil {
		r.Close()
		return nil, err
	}
	if err := startIperf(ctx, n.Node("lan")); err != nil {
		r.Close()
		return nil, err
	}
	r.Addr["bulk"] = hostPort(l3LanIP, bulkPort)
	return r, nil
}

// wgQuickConf renders a wg-quick file with one peer.
func wgQuickConf(priv l3config.Key, addr string, listen int, peer l3config.Key, endpoint string, allowed ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "[Interface]\nPrivateKey = %s\nAddress = %s\n", priv, addr)
	if listen > 0 {
		fmt.Fprintf(&b, "ListenPort = %d\n", listen)
	}
	fmt.Fprintf(&b, "\n[Peer]\nPublicKey = %s\nAllowedIPs = %s\n", peer, strings.Join(allowed, ", "))
	if endpoint != "" {
		fmt.Fprintf(&b, "Endpoint = %s\nPersistentKeepalive = 25\n", endpoint)
	}
	return []byte(b.String())
}

// startL3Stock is the point-to-point peer: the client's stock wireguard-go
// peers directly with a stock wireguard-go on the connector host, which
// forwards to the LAN in the kernel. No edge process.
func startL3Stock(ctx context.Context, env *Env) (*Rig, error) {
	r, err := newL3Rig(ctx, env)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Rig, error) { r.Close(); return nil, err }
	conn := r.Net.Node("conn")
	if err := conn.Sysctl("net/ipv4/ip_forward", "1"); err != nil {
		return fail(err)
	}
	kc, err := l3config.GeneratePrivateKey()
	if err != nil {
		return fail(err)
	}
	ks, err := l3config.GeneratePrivateKey()
	if err != nil {
		return fail(err)
	}
	server, err := conn.WGQuickUp(ctx, l3Iface("s"), wgQuickConf(ks, l3ConnVIP+"/32", l3WGPort, kc.PublicKey(), "", l3ClientVIP+"/32"))
	if err != nil {
		return fail(err)
	}
	pid, err := server.Pid()
	if err != nil {
		return fail(err)
	}
	if err := env.PinSUT(pid); err != nil {
		return fail(err)
	}
	if _, err := r.Client.WGQuickUp(ctx, l3Iface("c"), wgQuickConf(kc, l3ClientVIP+"/32", 0, ks.PublicKey(),
		hostPort(l3ConnIP, l3WGPort), l3ConnVIP+"/32", l3LanNet)); err != nil {
		return fail(err)
	}
	r.Measured = []int{pid}
	r.Roles = map[int]string{pid: "wireguard-go"}
	return r, nil
}

// startL3Onramp is onramp's two-leg path: the client's stock wireguard-go
// peers with the edge's WireGuard hub (`edge serve`), which routes to
// `connector l3 run` on the connector host, which forwards to the LAN. The
// configurations are the ones `edge l3 client add` and `edge l3 connector
// add` print, the connector's key the one `connector l3 init` made on its
// host.
func startL3Onramp(ctx context.Context, env *Env) (*Rig, error) {
	return startL3OnrampYAML(ctx, env, "")
}

// startL3OnrampYAML is startL3Onramp with extra appended to the edge's
// configuration; the rig's State is the *testnet.L3World.
func startL3OnrampYAML(ctx context.Context, env *Env, extra string) (*Rig, error) {
	r, err := newL3Rig(ctx, env)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Rig, error) { r.Close(); return nil, err }
	dir, err := tempDir(r)
	if err != nil {
		return fail(err)
	}
	w, err := testnet.StartL3WorldYAML(ctx, r.Net, dir, func(data string) string { return testnet.L3EdgeYAML(data, "") + extra })
	if err != nil {
		return fail(err)
	}
	site := filepath.Join(dir, "site.yml")
	if _, err := w.AddConnector(ctx, r.Net.Node("conn"), "site", site, l3LanNet); err != nil {
		return fail(err)
	}
	conf, err := w.EdgeCLI(ctx, "l3", "client", "add", "bench")
	if err != nil {
		return fail(err)
	}
	c, err := w.StartConnector(r.Net.Node("conn"), site)
	if err != nil {
		return fail(err)
	}
	if _, err := r.Client.WGQuickUp(ctx, l3Iface("c"), []byte(conf)); err != nil {
		return fail(err)
	}
	edge, conn := w.Edge.Cmd.Process.Pid, c.Cmd.Process.Pid
	for _, pid := range []int{edge, conn} {
		if err := env.PinSUT(pid); err != nil {
			return fail(err)
		}
	}
	r.Measured = []int{edge, conn}
	r.Roles = map[int]string{edge: "edge", conn: "connector"}
	r.State = w
	return r, nil
}

// startL3Direct is onramp's connector leg alone: the client's stock
// wireguard-go peers directly with `connector l3 run` (its l3.yml names
// the client as its one peer), which forwards to the LAN.
func startL3Direct(ctx context.Context, env *Env) (*Rig, error) {
	r, err := newL3Rig(ctx, env)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Rig, error) { r.Close(); return nil, err }
	dir, err := tempDir(r)
	if err != nil {
		return fail(err)
	}
	kc, err := l3config.GeneratePrivateKey()
	if err != nil {
		return fail(err)
	}
	kn, err := l3config.GeneratePrivateKey()
	if err != nil {
		return fail(err)
	}
	if _, err := r.Client.WGQuickUp(ctx, l3Iface("c"), wgQuickConf(kc, l3ClientVIP+"/32", l3WGPort, kn.PublicKey(), "",
		l3ConnVIP+"/32", l3LanNet)); err != nil {
		return fail(err)
	}
	cfg := &l3config.Connector{
		Name:       "direct",
		PrivateKey: kn,
		Addresses:  []netip.Prefix{netip.MustParsePrefix(l3ConnVIP + "/32")},
		Edge:       l3config.EdgePeer{PublicKey: kc.PublicKey(), Endpoint: hostPort(l3ClientIP, l3WGPort)},
		Subnets:    []netip.Prefix{netip.MustParsePrefix(l3LanNet)},
		Routes:     []netip.Prefix{netip.MustParsePrefix(l3ClientVIP + "/32")},
	}
	y, err := cfg.Marshal()
	if err != nil {
		return fail(err)
	}
	site := filepath.Join(dir, "direct.yml")
	if err := os.WriteFile(site, y, 0o600); err != nil {
		return fail(err)
	}
	w := &testnet.L3World{Net: r.Net}
	if w.ConnectorBin, err = testnet.BuildBinary(testnet.ConnectorPkg); err != nil {
		return fail(err)
	}
	c, err := w.StartConnector(r.Net.Node("conn"), site)
	if err != nil {
		return fail(err)
	}
	pid := c.Cmd.Process.Pid
	if err := env.PinSUT(pid); err != nil {
		return fail(err)
	}
	r.Measured = []int{pid}
	r.Roles = map[int]string{pid: "connector"}
	return r, nil
}

// withBusy adds sut_busy and load_busy to run's sample: whether the system
// under test or the load side (the stock WireGuard client encrypting,
// iperf3) was the bound.
func withBusy(run func(context.Context, *Env, *Rig) (Sample, error)) func(context.Context, *Env, *Rig) (Sample, error) {
	return func(ctx context.Context, env *Env, rig *Rig) (Sample, error) {
		busy := measureBusy(env)
		smp, err := run(ctx, env, rig)
		if err != nil {
			return smp, err
		}
		busy(smp.Values)
		return smp, nil
	}
}

// withEdgeCPU wraps run to add the edge's own CPU (the hub's or the
// tunnel edge's cost alone, without the connector's): seconds per GB
// (edge_cpu_per_gb) where the sample counts bytes, milliseconds per 1000
// operations (edge_cpu_per_kop) where it counts operations. A system with
// no process in the role "edge" gets neither.
func withEdgeCPU(run func(context.Context, *Env, *Rig) (Sample, error)) func(context.Context, *Env, *Rig) (Sample, error) {
	return func(ctx context.Context, env *Env, rig *Rig) (Sample, error) {
		var edge []int
		for pid, role := range rig.Roles {
			if role == "edge" {
				edge = append(edge, pid)
			}
		}
		c0, err0 := TreeCPUSeconds(edge)
		smp, err := run(ctx, env, rig)
		if err != nil {
			return smp, err
		}
		c1, err1 := TreeCPUSeconds(edge)
		if len(edge) == 0 || err0 != nil || err1 != nil {
			return smp, nil
		}
		if smp.Values == nil {
			smp.Values = map[string]float64{}
		}
		if smp.Bytes > 0 {
			smp.Values["edge_cpu_per_gb"] = (c1 - c0) / (smp.Bytes / 1e9)
		}
		if smp.Ops > 0 {
			smp.Values["edge_cpu_per_kop"] = (c1 - c0) * 1e3 / (smp.Ops / 1e3)
		}
		return smp, nil
	}
}

// runL3PPS sends 64-byte UDP datagrams with iperf3 as fast as two senders
// can for BulkSeconds and reports the packets per second the LAN host
// received.
func runL3PPS(ctx context.Context, env *Env, rig *Rig) (Sample, error) {
	host, port, _ := strings.Cut(rig.Addr["bulk"], ":")
	args := []string{"-c", host, "-p", port, "-t", fmt.Sprint(env.BulkSeconds), "-J", "-u", "-b", "0",
		"-l", fmt.Sprint(l3PPSLen), "-P", "2"}
	out, err := output(env, rig.Client.Command(ctx, "iperf3", args...))
	if err != nil {
		return Sample{}, err
	}
	res, err := ParseIperf3(out)
	if err != nil {
		return Sample{}, err
	}
	// Bytes counts payload; each datagram is l3PPSLen bytes.
	pkts := res.Bytes / l3PPSLen
	return Sample{Ops: pkts, Values: map[string]float64{"pps": pkts / res.Seconds / 1e3}}, nil
}

var (
	l3BulkMetrics = []Metric{
		{Name: "throughput", Unit: "Gbit/s", Note: "the iperf3 receiver's figure (TCP through WireGuard)"},
		{Name: "cpu_per_gb", Unit: "CPU-s/GB", Lower: true, Note: "utime+stime of the processes under test per 10^9 payload bytes"},
		{Name: "rss_peak", Unit: "MiB", Lower: true, Note: "sum of VmHWM of the processes under test"},
		{Name: "retransmits", Unit: "", Lower: true, Note: "TCP retransmits iperf3 counted on the sender"},
	}
	l3PPSMetrics = []Metric{
		{Name: "pps", Unit: "kpkt/s", Note: "64-byte UDP datagrams the LAN host received per second (iperf3 -u -b 0 -l 64 -P 2)"},
		{Name: "cpu_per_kop", Unit: "CPU-µs/pkt", Lower: true, Note: "CPU of the processes under test per packet delivered"},
	}
)

const (
	setupL3Onramp = "stock wireguard-go client in `client` (load CPUs) -> `edge serve` WireGuard hub in `edge` -> `connector l3 run` in `conn` (both on the SUT CPUs) -> iperf3 -s in `lan`; configs printed by edge l3 client/connector add, the connector's key made by connector l3 init"
	setupL3Direct = "stock wireguard-go client in `client` (load CPUs) peering directly with `connector l3 run` in `conn` (SUT CPUs) -> iperf3 -s in `lan`; no edge"
)

const setupL3Stock = "stock wireguard-go on `conn` (SUT CPUs) peering directly with the client's stock wireguard-go (load CPUs), kernel forwarding to iperf3 -s in `lan`; no edge"

func estL3(env *Env) float64 { return 5 + float64(env.Reps*(env.BulkSeconds+1)) }

// l3Scenarios are the L3 on-ramp's scenarios (area "l3").
func l3Scenarios() []Scenario {
	edgeCPU := Metric{Name: "edge_cpu_per_gb", Unit: "CPU-s/GB", Lower: true, Note: "the edge process alone"}
	// sut_busy and load_busy say which side was the bound: the stock
	// client on the load CPU encrypts every packet of every scenario.
	bulk := append(append([]Metric{}, l3BulkMetrics...), sutBusyMetric, loadBusyMetric)
	onrampBulk := append(append([]Metric{}, bulk...), edgeCPU)
	return []Scenario{
		{Name: "l3/bulk1", Area: "l3", Label: "onramp L3, client -> edge -> connector", Onramp: true, Setup: setupL3Onramp,
			Goals:   []Goal{{Peer: "l3-wggo/bulk1", Metric: "throughput", Op: ">=", Ratio: 0.7}},
			Metrics: onrampBulk, Estimate: estL3, Start: startL3Onramp, Run: withBusy(withEdgeCPU(runBulk(1)))},
		{Name: "l3/bulk4", Area: "l3", Label: "onramp L3, client -> edge -> connector, 4 streams", Onramp: true, Setup: setupL3Onramp,
			Goals:   []Goal{{Peer: "l3-wggo/bulk4", Metric: "throughput", Op: ">=", Ratio: 0.7}},
			Metrics: onrampBulk, Estimate: estL3, Start: startL3Onramp, Run: withBusy(withEdgeCPU(runBulk(4)))},
		{Name: "l3/pps64", Area: "l3", Label: "onramp L3, client -> edge -> connector, 64 B UDP", Onramp: true, Setup: setupL3Onramp,
			Metrics: l3PPSMetrics, Estimate: estL3, Start: startL3Onramp, Run: runL3PPS},
		{Name: "l3-direct/bulk1", Area: "l3", Label: "onramp L3 connector leg alone (client peers with the connector)", Onramp: true, Setup: setupL3Direct,
			Goals:   []Goal{{Peer: "l3-wggo/bulk1", Metric: "throughput", Op: ">=", Ratio: 1.0}},
			Metrics: bulk, Estimate: estL3, Start: startL3Direct, Run: withBusy(runBulk(1))},
		{Name: "l3-direct/bulk4", Area: "l3", Label: "onramp L3 connector leg alone, 4 streams", Onramp: true, Setup: setupL3Direct,
			Goals:   []Goal{{Peer: "l3-wggo/bulk4", Metric: "throughput", Op: ">=", Ratio: 1.0}},
			Metrics: bulk, Estimate: estL3, Start: startL3Direct, Run: withBusy(runBulk(4))},
		{Name: "l3-wggo/bulk1", Area: "l3", Label: "stock wireguard-go, point to point", Setup: setupL3Stock,
			PeerOf:  []string{"l3/bulk1", "l3-direct/bulk1"},
			Metrics: bulk, Estimate: estL3, Start: startL3Stock, Run: withBusy(runBulk(1))},
		{Name: "l3-wggo/bulk4", Area: "l3", Label: "stock wireguard-go, point to point, 4 streams", Setup: setupL3Stock,
			PeerOf:  []string{"l3/bulk4", "l3-direct/bulk4"},
			Metrics: bulk, Estimate: estL3, Start: startL3Stock, Run: withBusy(runBulk(4))},
		{Name: "l3-wggo/pps64", Area: "l3", Label: "stock wireguard-go, point to point, 64 B UDP", Setup: setupL3Stock,
			PeerOf:  []string{"l3/pps64"},
			Metrics: l3PPSMetrics, Estimate: estL3, Start: startL3Stock, Run: runL3PPS},
	}
}
