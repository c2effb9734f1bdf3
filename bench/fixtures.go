package bench

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/onramp-net/onramp/testnet"
)

// Every world has the shape of the tunnel's: user - edge - conn - origin,
// addresses as in [testnet.Tunnel]. The system under test (or the peer
// proxy) runs in "edge" (and "conn" for the tunnel); iperf3 -s and the
// echo origin run in "origin", the load generators in "user".
const (
	bulkPort  = 5201 // iperf3 on the origin, and the proxies' port for it
	echoPort  = 7000 // the proxies' port for the echo origin
	rawPort   = 4433 // raw quic-go and raw TLS receivers in "conn"
	edgeUser  = "198.18.10.1"
	connAddr  = "198.18.20.2"
	originIP  = "198.18.30.2"
	tunnelDir = "onramp-bench-"
)

func hostPort(h string, p int) string { return fmt.Sprintf("%s:%d", h, p) }

// RoutedLine is [testnet.Tunnel] with forwarding in "edge" and "conn" and
// routes end to end: the kernel path and the place of the peer proxies.
func RoutedLine() testnet.Topology {
	t := testnet.Tunnel()
	t.Name = "routed"
	a := netip.MustParseAddr
	p := netip.MustParsePrefix
	for i := range t.Nodes {
		n := &t.Nodes[i]
		switch n.Name {
		case "user":
			n.Routes = []testnet.Route{{Dst: testnet.Default4, Via: a("198.18.10.1")}, {Dst: testnet.Default6, Via: a("fd00:10::1")}}
		case "edge":
			n.Forward = true
			n.Routes = []testnet.Route{{Dst: p("198.18.30.0/24"), Via: a("198.18.20.2")}, {Dst: p("fd00:30::/64"), Via: a("fd00:20::2")}}
		case "conn":
			n.Forward = true
			n.Routes = []testnet.Route{{Dst: p("198.18.10.0/24"), Via: a("198.18.20.1")}, {Dst: p("fd00:10::/64"), Via: a("fd00:20::1")}}
		case "origin":
			n.Routes = []testnet.Route{{Dst: testnet.Default4, Via: a("198.18.30.1")}, {Dst: testnet.Default6, Via: a("fd00:30::1")}}
		}
	}
	return t
}

// newRig builds topo and starts the origins: the echo service of testnet
// (in the harness, on the load CPUs) and iperf3 -s.
func newRig(ctx context.Context, env *Env, topo testnet.Topology) (*Rig, error) {
	n, err := env.Build(ctx, topo)
	if err != nil {
		return nil, err
	}
	r := &Rig{Net: n, Client: n.Node("user"), Addr: map[string]string{}}
	r.OnClose(n.Close)
	origin := n.Node("origin")
	if _, err := origin.ServeOrigins(); err != nil {
		r.Close()
		return nil, err
	}
	if err := startIperf(ctx, origin); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// startIperf starts iperf3 -s on bulkPort in node and waits until it listens.
func startIperf(ctx context.Context, node *testnet.Node) error {
	iperf, err := node.Start("iperf3", "-s", "-p", fmt.Sprint(bulkPort))
	if err != nil {
		return err
	}
	return waitListen(ctx, node, "tcp", bulkPort, iperf)
}

// waitListen waits until something listens on port in node (by ss, so
// that no probe connection disturbs the server). If p is not nil and
// exits first, its output is the error.
func waitListen(ctx context.Context, node *testnet.Node, network string, port int, p ...*testnet.Proc) error {
	flag := "-Hltn"
	if network == "udp" {
		flag = "-Hlun"
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := node.Command(ctx, "ss", flag, "sport", "=", fmt.Sprintf(":%d", port)).Output()
		if err == nil && strings.TrimSpace(string(out)) != "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s port %d in %s after 15s", network, port, node.Name)
		}
		for _, proc := range p {
			select {
			case <-proc.Done():
				return fmt.Errorf("%s exited before listening on %s port %d: %v\n%s", proc.Cmd.Args[len(proc.Cmd.Args)-1], network, port, proc.Wait(), proc.Output())
			default:
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func tempDir(r *Rig) (string, error) {
	d, err := os.MkdirTemp("", tunnelDir)
	if err != nil {
		return "", err
	}
	r.OnClose(func() error { return os.RemoveAll(d) })
	return d, nil
}

// startKernel: no proxy; the user reaches the origin through two routers.
func startKernel(ctx context.Context, env *Env) (*Rig, error) {
	r, err := newRig(ctx, env, RoutedLine())
	if err != nil {
		return nil, err
	}
	r.Addr["bulk"] = hostPort(originIP, bulkPort)
	r.Addr["echo"] = hostPort(originIP, testnet.OriginEcho)
	return r, nil
}

// haproxyHopConfig is the configuration of an HAProxy that listens on
// bind and sends each connection to next: iperf3's port to the same port,
// echoPort to echoTo (the echo origin's port, or the next hop's echoPort).
func haproxyHopConfig(maxconn int, bind, next string, echoTo int) string {
	return fmt.Sprintf(`global
    nbthread 1
    maxconn %[6]d
defaults
    mode tcp
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    option splice-request
    option splice-response
frontend bulk
    bind %[1]s:%[3]d
    default_backend bulk
backend bulk
    server next %[2]s:%[3]d
frontend echo
    bind %[1]s:%[4]d
    default_backend echo
backend echo
    server next %[2]s:%[5]d
`, bind, next, bulkPort, echoPort, echoTo, maxconn)
}

// haproxyMaxConn is HAProxy's maxconn: the streams l4-streams holds and
// room to spare (so that none waits in the accept queue), at least 4000.
// HAProxy needs some two descriptors per connection and says so at start
// when the limit is lower.
func haproxyMaxConn(env *Env) int { return max(4000, env.Streams+1000) }

// startHAProxy runs HAProxy in "edge", pinned to the SUT CPUs.
func startHAProxy(ctx context.Context, env *Env) (*Rig, error) {
	return startHAProxies(ctx, env, haproxyHop{"edge", edgeUser, originIP, testnet.OriginEcho})
}

// startHAProxyChain runs two HAProxies in series, one in "edge" and one in
// "conn", both pinned to the SUT CPUs: the tunnel's shape (three TCP
// connections, two relaying processes) with plain TCP between them, so
// that a figure of the tunnel can be told from what its shape costs.
func startHAProxyChain(ctx context.Context, env *Env) (*Rig, error) {
	return startHAProxies(ctx, env,
		haproxyHop{"conn", connAddr, originIP, testnet.OriginEcho},
		haproxyHop{"edge", edgeUser, connAddr, echoPort})
}

// haproxyHop is one HAProxy of a rig: in node, from bind to next (see
// haproxyHopConfig).
type haproxyHop struct {
	node, bind, next string
	echoTo           int
}

// startHAProxies runs an HAProxy per hop, in order (the one nearest the
// origin first), each pinned to the SUT CPUs and measured.
func startHAProxies(ctx context.Context, env *Env, hops ...haproxyHop) (*Rig, error) {
	r, err := newRig(ctx, env, RoutedLine())
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Rig, error) { r.Close(); return nil, err }
	dir, err := tempDir(r)
	if err != nil {
		return fail(err)
	}
	for _, hop := range hops {
		path := filepath.Join(dir, "haproxy-"+hop.node+".cfg")
		cfg := haproxyHopConfig(haproxyMaxConn(env), hop.bind, hop.next, hop.echoTo)
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			return fail(err)
		}
		node := r.Net.Node(hop.node)
		p, err := env.StartSUT(node, "haproxy", "-f", path, "-db")
		if err != nil {
			return fail(err)
		}
		if err := waitListen(ctx, node, "tcp", echoPort, p); err != nil {
			return fail(fmt.Errorf("haproxy in %s: %w", hop.node, err))
		}
		r.Measured = append(r.Measured, p.Cmd.Process.Pid)
	}
	r.Addr["bulk"] = hostPort(edgeUser, bulkPort)
	r.Addr["echo"] = hostPort(edgeUser, echoPort)
	return r, nil
}

// startSocat runs two forking socat relays in "edge", pinned to the SUT
// CPUs (their children inherit it).
func startSocat(ctx context.Context, env *Env) (*Rig, error) {
	r, err := newRig(ctx, env, RoutedLine())
	if err != nil {
		return nil, err
	}
	edge := r.Net.Node("edge")
	for _, fw := range []struct{ listen, to int }{{bulkPort, bulkPort}, {echoPort, testnet.OriginEcho}} {
		p, err := env.StartSUT(edge, "socat",
			fmt.Sprintf("TCP-LISTEN:%d,bind=%s,fork,reuseaddr", fw.listen, edgeUser),
			fmt.Sprintf("TCP:%s:%d", originIP, fw.to))
		if err != nil {
			r.Close()
			return nil, err
		}
		if err := waitListen(ctx, edge, "tcp", fw.listen, p); err != nil {
			r.Close()
			return nil, err
		}
		r.Measured = append(r.Measured, p.Cmd.Process.Pid)
	}
	r.Addr["bulk"] = hostPort(edgeUser, bulkPort)
	r.Addr["echo"] = hostPort(edgeUser, echoPort)
	return r, nil
}

// tunnelEdgeYAML binds the bench ports on the edge to the tunnel. All the
// bench's users come from one client address: the limits per source and
// in total are raised with the tunnel's.
func tunnelEdgeYAML(tunnel string) string {
	return fmt.Sprintf(`bindings:
  - {listen: "tcp://%[2]s:%[3]d", tunnel: %[1]s, service: bulk.bench}
  - {listen: "tcp://%[2]s:%[4]d", tunnel: %[1]s, service: echo.bench}
limits: {maxStreamsPerTunnel: 50000, maxConns: 50000, maxConnsPerSource: 50000}
`, tunnel, edgeUser, bulkPort, echoPort)
}

// spreadYAML is edge.yml's stream_spread line for spread, nothing for 0.
func spreadYAML(spread int) string {
	if spread == 0 {
		return ""
	}
	return fmt.Sprintf("stream_spread: %d\n", spread)
}

// tunnelIngressYAML sends the bench services to the origin.
func tunnelIngressYAML() string {
	return fmt.Sprintf(`ingress:
  - {hostname: bulk.bench, service: "tcp://%[1]s:%[2]d"}
  - {hostname: echo.bench, service: "tcp://%[1]s:%[3]d"}
  - service: "http_status:404"
`, originIP, bulkPort, testnet.OriginEcho)
}

// startTunnel runs the real edge and connector binaries (testnet's
// TunnelRig) with the connector on protocol, both pinned to the SUT CPUs.
// The connector keeps its default number of connections.
func startTunnel(protocol string) func(ctx context.Context, env *Env) (*Rig, error) {
	return startTunnelConns(protocol, 0)
}

// startTunnelConns is startTunnel with the connector keeping conns
// connections (--connections), set up only once the edge counts all of
// them; 0 leaves the connector's default and waits for the first.
func startTunnelConns(protocol string, conns int) func(ctx context.Context, env *Env) (*Rig, error) {
	return startTunnelSpread(protocol, conns, 0)
}

// startTunnelSpread is startTunnelConns with the edge's stream_spread set
// to spread (0: the edge's default).
func startTunnelSpread(protocol string, conns, spread int) func(ctx context.Context, env *Env) (*Rig, error) {
	return func(ctx context.Context, env *Env) (*Rig, error) {
		r, err := newRig(ctx, env, testnet.Tunnel())
		if err != nil {
			return nil, err
		}
		fail := func(err error) (*Rig, error) { r.Close(); return nil, err }
		dir, err := tempDir(r)
		if err != nil {
			return fail(err)
		}
		rig, err := testnet.StartTunnelRig(ctx, r.Net, testnet.RigOptions{Dir: dir, TunnelName: "bench", EdgeYAML: tunnelEdgeYAML("bench") + spreadYAML(spread)})
		if err != nil {
			return fail(fmt.Errorf("tunnel rig: %w", err))
		}
		if err := env.PinSUT(rig.Edge.Cmd.Process.Pid); err != nil {
			return fail(err)
		}
		var extra []string
		if conns > 0 {
			extra = []string{"--connections", fmt.Sprint(conns)}
		}
		c, err := rig.StartConnector(r.Net.Node("conn"), "bench", protocol, tunnelIngressYAML(), extra...)
		if err != nil {
			return fail(err)
		}
		if err := env.PinSUT(c.Cmd.Process.Pid); err != nil {
			return fail(err)
		}
		if err := c.WaitReady(20 * time.Second); err != nil {
			return fail(fmt.Errorf("connector: %w\n%s", err, c.Output()))
		}
		if conns > 0 {
			if err := waitEdgeConns(ctx, rig, protocol, conns, 20*time.Second); err != nil {
				return fail(fmt.Errorf("%w\n%s", err, c.Output()))
			}
		}
		// Threads started while connecting inherited the pinning; pin
		// again in case one was cloned before it.
		for _, pid := range []int{rig.Edge.Cmd.Process.Pid, c.Cmd.Process.Pid} {
			if err := env.PinSUT(pid); err != nil {
				return fail(err)
			}
		}
		r.Measured = []int{rig.Edge.Cmd.Process.Pid, c.Cmd.Process.Pid}
		r.Roles = map[int]string{rig.Edge.Cmd.Process.Pid: "edge", c.Cmd.Process.Pid: "connector"}
		r.Pprof = map[string]PprofTarget{"edge": {Node: r.Net.Node("edge"), Addr: rig.EdgeMetricsAddr()},
			"connector": {Node: c.Node, Addr: c.Metrics}}
		r.Addr["bulk"] = hostPort(edgeUser, bulkPort)
		r.Addr["echo"] = hostPort(edgeUser, echoPort)
		r.State = rig
		return r, nil
	}
}

// startRaw runs the receiver of a raw transport (bench/cmd/rawquic or
// rawtls) in "conn", pinned to the SUT CPUs; Run starts the sender in
// "edge", so the bytes cross the same link as the tunnel's.
func startRaw(bin, network string) func(ctx context.Context, env *Env) (*Rig, error) {
	return func(ctx context.Context, env *Env) (*Rig, error) {
		n, err := env.Build(ctx, testnet.Tunnel())
		if err != nil {
			return nil, err
		}
		r := &Rig{Net: n, Client: n.Node("edge"), Addr: map[string]string{}}
		r.OnClose(n.Close)
		conn := n.Node("conn")
		p, err := env.StartSUT(conn, env.Bins[bin], "recv", "-listen", hostPort(connAddr, rawPort))
		if err != nil {
			r.Close()
			return nil, err
		}
		if err := waitListen(ctx, conn, network, rawPort, p); err != nil {
			r.Close()
			return nil, fmt.Errorf("%s: %w", bin, err)
		}
		r.Measured = []int{p.Cmd.Process.Pid}
		r.Addr["raw"] = hostPort(connAddr, rawPort)
		return r, nil
	}
}

// startRawRelay runs a raw transport as a relay in the tunnel's shape: the
// receiver in "conn" relaying to iperf3 -s in "origin", the relay in
// "edge" accepting the user's connections on the tunnel's bulk address,
// both pinned to the SUT CPUs. iperf3 from "user" measures it (runBulk).
func startRawRelay(bin, network string) func(ctx context.Context, env *Env) (*Rig, error) {
	return startRawRelayTo(bin, network, "bulk")
}

// startRawRelayTo is startRawRelay for one of the origin's services: "bulk"
// (iperf3) or "echo" (the echo origin), on the port the proxies use for it.
func startRawRelayTo(bin, network, service string) func(ctx context.Context, env *Env) (*Rig, error) {
	listen, to := bulkPort, bulkPort
	if service == "echo" {
		listen, to = echoPort, testnet.OriginEcho
	}
	return func(ctx context.Context, env *Env) (*Rig, error) {
		r, err := newRig(ctx, env, testnet.Tunnel())
		if err != nil {
			return nil, err
		}
		fail := func(err error) (*Rig, error) { r.Close(); return nil, fmt.Errorf("%s: %w", bin, err) }
		conn, edge := r.Net.Node("conn"), r.Net.Node("edge")
		recv, err := env.StartSUT(conn, env.Bins[bin], "recv", "-listen", hostPort(connAddr, rawPort), "-to", hostPort(originIP, to))
		if err != nil {
			return fail(err)
		}
		if err := waitListen(ctx, conn, network, rawPort, recv); err != nil {
			return fail(err)
		}
		relay, err := env.StartSUT(edge, env.Bins[bin], "relay", "-listen", hostPort(edgeUser, listen), "-addr", hostPort(connAddr, rawPort))
		if err != nil {
			return fail(err)
		}
		if err := waitListen(ctx, edge, "tcp", listen, relay); err != nil {
			return fail(err)
		}
		r.Measured = []int{relay.Cmd.Process.Pid, recv.Cmd.Process.Pid}
		r.Addr[service] = hostPort(edgeUser, listen)
		return r, nil
	}
}

// startNothing is for scenarios that need no namespaces.
func startNothing(context.Context, *Env) (*Rig, error) { return &Rig{}, nil }

// cpuOf is the CPU time of a finished command.
func cpuOf(cmd *exec.Cmd) float64 {
	if cmd.ProcessState == nil {
		return 0
	}
	return (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
}

// maxRSSOf is the peak resident memory of a finished command in KiB.
func maxRSSOf(cmd *exec.Cmd) float64 {
	if cmd.ProcessState == nil {
		return 0
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return float64(ru.Maxrss) // KiB on Linux
	}
	return 0
}
