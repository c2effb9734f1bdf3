package bench

import "context"

// Areas, in the order of BENCHMARKS.md.
var Areas = []Area{
	{Key: "l4-bulk-1", Only: "/bulk1$", Title: "L4: single-stream bulk throughput", Compare: []string{"throughput", "cpu_per_gb"},
		Intro: "One TCP stream, iperf3 from `user` to `origin` through whatever is in the middle: the tunnel (edge and connector), the edge alone as a direct proxy with each relay strategy, the peers."},
	{Key: "l4-bulk-8", Only: "/bulk8$", Title: "L4: 8 parallel streams", Compare: []string{"throughput", "cpu_per_gb"},
		Intro: "iperf3 -P 8: eight TCP streams at once (through the tunnel, the connector's default 4 tunnel connections carry them, 2 data streams each; `l4-scale` varies streams and connections)."},
	scaleArea, // scale.go
	{Key: "l4-latency", Only: "/echo$", Title: "L4: request/response latency", Compare: []string{"p50", "p99"},
		Intro: "Sequential 64-byte echoes on one warm connection (harness load generator), after 200 unrecorded warm-up echoes."},
	{Key: "l4-connrate", Only: "/connrate$", Title: "L4: new connections per second", Compare: []string{"rate", "p99"},
		Intro: "Concurrent dialers each opening a connection, doing a 1-byte echo and closing it, through a warm tunnel or a direct proxy (which dials the origin for each)."},
	{Key: "l4-streams", Only: "/streams$", Title: "L4: many concurrent streams", Compare: []string{"per_stream", "rss_held"},
		Intro: "Connections held open at once (the run's `streams`: 5000, quick 1000, or `-streams N`), 100 of them echoing continuously, the rest idle; resident memory of the processes under test sampled every 100 ms, so `per_stream` is what an idle connection costs. Kernel memory (socket buffers, pipes) is not in VmRSS and not counted, for any system."},
	firstByteArea, // scenarios_rtt.go
	{Key: "l3", Only: "^l3", Title: "L3 connector (WireGuard)", Compare: []string{"throughput", "cpu_per_gb"},
		Intro: "iperf3 from a stock WireGuard client (wireguard-go from go.mod, set up by wg-quick) to a LAN host behind a connector. onramp: through the edge hub and `connector l3 run` (both on the SUT CPUs), or the connector leg alone; peer: stock wireguard-go on the connector host, point to point. This kernel has no WireGuard module, so there is no kernel peer. " +
			"The client encrypts every packet on the load CPUs: where `load_busy` is near 1.00 and `sut_busy` is not, the client was the bound and the throughput ratio says little; `cpu_per_gb` then compares the two sides' work."},
	{Key: "xdp", Only: "^xdp/", Title: "XDP pre-filter: garbage dropped per second", Compare: []string{"pps_per_cpu", "pps", "recv_per_pkt", "busy_per_pkt"},
		Intro: "Random bytes at the edge's WireGuard port as fast as one sender on the load CPU can send them (raw socket, sendmmsg), from spoofed sources through the edge's link to `conn2`: dropped by the XDP pre-filter on that link, or, without it, read and dropped by the edge's WireGuard device. veth runs the receive side (and so XDP) in the softirq of the sending CPU, so the pre-filter's `pps` is bounded by the sender. The goal is on `pps_per_cpu`: what one CPU gets rid of a second at the receive side's measured cost per datagram (softirq and edge process CPU, `recv_per_pkt`), the per-CPU figure the sender cannot reach."},
	{Key: "l3-flood", Only: "^l3-flood/", Title: "L3 connector under a flood", Compare: []string{"throughput"},
		Intro: "The `l3/bulk1` path (stock WireGuard client -> edge hub -> connector -> LAN, iperf3, one stream) while `conn2` floods the edge's WireGuard port through the edge's link to it: random bytes, or WireGuard initiations, each from a new spoofed source, at a fixed rate the load CPU sustains next to iperf3 and the client's wireguard-go. With the pre-filter on, it sits on both links, so the client's traffic crosses it too. The ratios are to the same path, pre-filter on, without a flood, measured interleaved with the pre-filter runs. The pre-filter-off rows are faster than the reference because native XDP on a veth costs throughput by itself (the veth then hands XDP one datagram at a time instead of the client's GSO batches; a check run: 1.5 against 2.0 Gbit/s with no flood, alike with an `xdp.frags` program); a NIC delivers datagrams one at a time anyway."},
	{Key: "steer", Only: "^steer/", Title: "Edge: WireGuard steering over receive loops", Compare: []string{"pps"},
		Intro: "64 WireGuard clients, one flow each, through the edge with its steering program (handshakes on a socket of their own, each peer's sessions on one loop): one loop against two. On two cores the edge has one CPU and the load generator the other, so a second loop cannot add a CPU; the scenario shows how evenly the loops share the flows and what steering costs per packet."},
	{Key: "go", Only: "^go/", Title: "Go microbenchmarks of the dataplane", Compare: nil,
		Intro: "go test -bench over ./dataplane/..., ./l4proxy/... and ./l3router/..., all CPUs, not pinned."},
}

// Metric sets shared by the scenarios.
var (
	bulkMetrics = []Metric{
		{Name: "throughput", Unit: "Gbit/s", Note: "the iperf3 receiver's figure"},
		{Name: "cpu_per_gb", Unit: "CPU-s/GB", Lower: true, Note: "utime+stime of the processes under test (and their children) per 10^9 payload bytes; stime includes the softirq work veth makes the kernel do in the sender's context, alike for every system in the middle"},
		{Name: "rss_peak", Unit: "MiB", Lower: true, Note: "sum of VmHWM of the processes under test"},
		{Name: "retransmits", Unit: "", Lower: true, Note: "TCP retransmits iperf3 counted on the sender"},
	}
	rawMetrics = []Metric{
		{Name: "throughput", Unit: "Gbit/s", Note: "raw peers: the receiver's count, first byte to EOF"},
		{Name: "cpu_per_gb", Unit: "CPU-s/GB", Lower: true, Note: "raw peers: sender and receiver, both on the SUT CPUs"},
		{Name: "rss_peak", Unit: "MiB", Lower: true, Note: "raw peers: VmHWM of the receiver plus ru_maxrss of the sender"},
	}
	echoMetrics = []Metric{
		{Name: "p50", Unit: "µs", Lower: true}, {Name: "p90", Unit: "µs", Lower: true},
		{Name: "p99", Unit: "µs", Lower: true}, {Name: "max", Unit: "µs", Lower: true},
		{Name: "cpu_per_kop", Unit: "CPU-ms/1k", Lower: true, Note: "CPU of the processes under test per 1000 echoes"},
	}
	connMetrics = []Metric{
		{Name: "rate", Unit: "conn/s"},
		{Name: "p50", Unit: "µs", Lower: true, Note: "connect + 1-byte echo + close"},
		{Name: "p99", Unit: "µs", Lower: true},
		{Name: "cpu_per_kop", Unit: "CPU-ms/1k", Lower: true, Note: "CPU of the processes under test per 1000 connections"},
		{Name: "edge_cpu_per_kop", Unit: "CPU-ms/1k", Lower: true, Note: "the edge process alone (a tunnel's edge, or the direct proxy): what an edge host pays per 1000 connections, to set beside HAProxy's cpu_per_kop"},
		{Name: "rss_peak", Unit: "MiB", Lower: true},
	}
	streamMetrics = []Metric{
		{Name: "per_stream", Unit: "KiB", Lower: true, Note: "(peak VmRSS while held − VmRSS before) / streams, summed over the processes under test"},
		{Name: "rss_held", Unit: "MiB", Lower: true, Note: "peak VmRSS sum while the streams are held"},
		{Name: "edge_rss_held", Unit: "MiB", Lower: true, Note: "the tunnel's edge alone"},
		{Name: "connector_rss_held", Unit: "MiB", Lower: true, Note: "the tunnel's connector alone"},
		{Name: "rss_peak", Unit: "MiB", Lower: true, Note: "VmHWM sum after the run"},
		{Name: "open_time", Unit: "ms", Lower: true, Note: "time to open and echo once on every stream, 16 dialers"},
	}
)

// Where things run, in words.
const (
	setupTunnel = "edge in `edge`, connector in `conn` (both on the SUT CPUs); iperf3 server and echo origin in `origin`, load in `user`"
	setupKernel = "no proxy: `edge` and `conn` route in the kernel; iperf3 server and echo origin in `origin`, load in `user`"
	setupHAP    = "HAProxy (TCP mode, nbthread 1, splice both ways) in `edge` on the SUT CPUs, `conn` routes; origin and load as for the tunnel"
	setupHAP2   = "two HAProxies in series (TCP mode, nbthread 1, splice both ways), one in `edge` and one in `conn`, both on the SUT CPUs: the tunnel's three TCP connections and two relaying processes, in plain TCP; origin and load as for the tunnel"
	setupSocat  = "socat TCP-LISTEN,fork,reuseaddr in `edge` on the SUT CPUs, `conn` routes; origin and load as for the tunnel"
	setupRawQ   = "bench/cmd/rawquic relay in `edge` (user TCP in, one QUIC stream per connection out), receiver in `conn` (stream in, TCP to the origin out), both on the SUT CPUs; same windows, socket buffers and copy buffer size as the tunnel; origin and load as for the tunnel"
	setupRawT   = "bench/cmd/rawtls relay in `edge` (user TCP in, one Go crypto/tls 1.3 connection per connection out), receiver in `conn` (TLS in, TCP to the origin out), both on the SUT CPUs; same copy buffer size as the tunnel; origin and load as for the tunnel"
	setupRawQE  = "bench/cmd/rawquic sender in `edge`, receiver in `conn`, both on the SUT CPUs, no TCP legs: the sender makes the bytes and the receiver drops them; same windows and socket buffers as the tunnel"
	setupRawTE  = "bench/cmd/rawtls sender in `edge`, receiver in `conn`, both on the SUT CPUs, no TCP legs: the sender makes the bytes and the receiver drops them; Go crypto/tls 1.3 over one TCP connection"
)

// estimates in seconds, for the time-left line.
func estBulk(env *Env) float64 { return 3 + float64(env.Reps*(env.BulkSeconds+1)) }
func estEcho(env *Env) float64 { return 3 + float64(env.Reps)*(1+float64(env.Echoes)/1700) }
func estConn(env *Env) float64 { return 3 + float64(env.Reps)*(env.ConnSeconds+0.5) }
func estStrm(env *Env) float64 {
	h := 5.0
	if env.Quick {
		h = 2
	}
	// A fresh world, the hold, and opening and echoing on every stream
	// twice at some 3,000 a second.
	return float64(env.Reps) * (h + 8 + float64(env.Streams)/1500)
}
func estGo(env *Env) float64 {
	if env.Quick {
		return 60
	}
	return 500 // about 8 minutes at -count 6 on 2 cores (2026-11)
}

// Scenarios is every scenario the harness knows, in run order. Adding one
// is adding a value here: a name, an area, what it is a peer of, how it
// starts and what one run does.
func Scenarios() []Scenario {
	tq, th := startTunnel("quic"), startTunnel("http2")
	bothTunnels := func(suffix string) []string { return []string{"tunnel-quic/" + suffix, "tunnel-http2/" + suffix} }
	// The peers of an area are the tunnels' and the direct proxy's (the
	// other strategies are compared with splice, the default).
	onrampL4 := func(suffix string) []string {
		return append(bothTunnels(suffix), directName(directStrategies[0], suffix))
	}
	var s []Scenario
	add := func(x Scenario) { s = append(s, x) }

	// Single-stream bulk.
	// The tunnel costs no more than its transport: its throughput at least
	// 0.9x the raw relay's, and its CPU per GB at most 1.1x what the
	// transport alone (the raw ends) and the two TCP legs (HAProxy's
	// relay) cost together.
	add(Scenario{Name: "tunnel-quic/bulk1", Area: "l4-bulk-1", Label: "onramp tunnel, QUIC", Onramp: true, Setup: setupTunnel,
		Goals: []Goal{{Peer: "rawquic/bulk1", Metric: "throughput", Op: ">=", Ratio: 0.90},
			{Peer: "rawquic-ends/bulk1", Plus: "haproxy/bulk1", Metric: "cpu_per_gb", Op: "<=", Ratio: 1.1}},
		Metrics: bulkMetrics, Estimate: estBulk, Start: tq, Run: runBulk(1)})
	add(Scenario{Name: "tunnel-http2/bulk1", Area: "l4-bulk-1", Label: "onramp tunnel, HTTP/2", Onramp: true, Setup: setupTunnel,
		Goals: []Goal{{Peer: "rawtls/bulk1", Metric: "throughput", Op: ">=", Ratio: 0.90},
			{Peer: "rawtls-ends/bulk1", Plus: "haproxy/bulk1", Metric: "cpu_per_gb", Op: "<=", Ratio: 1.1}},
		Metrics: bulkMetrics, Estimate: estBulk, Start: th, Run: runBulk(1)})
	// The edge as a direct proxy: splice at the kernel's pace, cheaper
	// than HAProxy per byte and at most half of what copying costs.
	s = append(s, directScenarios("bulk1", "l4-bulk-1", bulkMetrics, estBulk, runBulk(1), false, []Goal{
		{Peer: "kernel/bulk1", Metric: "throughput", Op: ">=", Ratio: 0.95},
		{Peer: "haproxy/bulk1", Metric: "throughput", Op: ">=", Ratio: 1.0},
		{Peer: "haproxy/bulk1", Metric: "cpu_per_gb", Op: "<=", Ratio: 1.0},
		{Peer: directName("copy", "bulk1"), Metric: "cpu_per_gb", Op: "<=", Ratio: 0.5},
	})...)
	// The raw peers of the goals relay as the tunnel does (user TCP ->
	// edge -> conn -> origin TCP, measured by iperf3); the endpoint
	// variants, without the TCP legs, show what the transport alone costs.
	add(Scenario{Name: "rawquic/bulk1", Area: "l4-bulk-1", Label: "raw quic-go relay", PeerOf: []string{"tunnel-quic/bulk1"}, Setup: setupRawQ,
		Metrics: bulkMetrics, Estimate: estBulk, Start: startRawRelay("rawquic", "udp"), Run: runBulk(1)})
	add(Scenario{Name: "rawtls/bulk1", Area: "l4-bulk-1", Label: "raw TLS-over-TCP relay", PeerOf: []string{"tunnel-http2/bulk1"}, Setup: setupRawT,
		Metrics: bulkMetrics, Estimate: estBulk, Start: startRawRelay("rawtls", "tcp"), Run: runBulk(1)})
	add(Scenario{Name: "rawquic-ends/bulk1", Area: "l4-bulk-1", Label: "raw quic-go, no TCP legs", PeerOf: []string{"tunnel-quic/bulk1"}, Setup: setupRawQE,
		Metrics: rawMetrics, Estimate: estBulk, Start: startRaw("rawquic", "udp"), Run: runRaw("rawquic")})
	add(Scenario{Name: "rawtls-ends/bulk1", Area: "l4-bulk-1", Label: "raw TLS over TCP, no TCP legs", PeerOf: []string{"tunnel-http2/bulk1"}, Setup: setupRawTE,
		Metrics: rawMetrics, Estimate: estBulk, Start: startRaw("rawtls", "tcp"), Run: runRaw("rawtls")})
	add(Scenario{Name: "haproxy/bulk1", Area: "l4-bulk-1", Label: "HAProxy TCP (splice)", PeerOf: onrampL4("bulk1"), Setup: setupHAP,
		Metrics: bulkMetrics, Estimate: estBulk, Start: startHAProxy, Run: runBulk(1)})
	add(Scenario{Name: "haproxy2/bulk1", Area: "l4-bulk-1", Label: "two HAProxies in series (the tunnel's shape)", PeerOf: onrampL4("bulk1"), Setup: setupHAP2,
		Metrics: bulkMetrics, Estimate: estBulk, Start: startHAProxyChain, Run: runBulk(1)})
	add(Scenario{Name: "socat/bulk1", Area: "l4-bulk-1", Label: "socat", PeerOf: onrampL4("bulk1"), Setup: setupSocat,
		Metrics: bulkMetrics, Estimate: estBulk, Start: startSocat, Run: runBulk(1)})
	add(Scenario{Name: "kernel/bulk1", Area: "l4-bulk-1", Label: "kernel routing (ceiling)", PeerOf: onrampL4("bulk1"), Setup: setupKernel,
		Metrics: bulkMetrics, Estimate: estBulk, Start: startKernel, Run: runBulk(1)})

	// The other L4 areas: the two tunnels and the direct proxies against
	// HAProxy, socat and the kernel.
	type l4area struct {
		suffix, area string
		metrics      []Metric
		est          func(*Env) float64
		run          func(context.Context, *Env, *Rig) (Sample, error)
		peers        []string // which peers apply
		fresh        bool     // a new world per run
		direct       []Goal   // the goals of the direct proxy (splice)
		tunnel       []Goal   // the goals of both tunnels
		own          bool     // and each tunnel's against its own bulk1 (bulk8)
		raw          bool     // the raw quic-go and TLS relays as each tunnel's floor
	}
	for _, a := range []l4area{
		// Eight streams carry at least what one does, over each transport.
		// The raw relays show what eight streams cost the transports alone.
		{"bulk8", "l4-bulk-8", bulkMetrics, estBulk, runBulk(8), []string{"haproxy", "haproxy2", "socat", "kernel"}, false, nil, nil, true, true},
		// The tunnel: a round trip through two processes and three TCP
		// legs at most 1.3x HAProxy's, and at least 0.8x its connection
		// rate.
		{"echo", "l4-latency", echoMetrics, estEcho, runEcho, []string{"haproxy", "haproxy2", "socat", "kernel"}, false,
			[]Goal{{Peer: "haproxy/echo", Metric: "p99", Op: "<=", Ratio: 1.0}},
			[]Goal{{Peer: "haproxy/echo", Metric: "p50", Op: "<=", Ratio: 1.3}}, false, true},
		{"connrate", "l4-connrate", connMetrics, estConn, withEdgeCPU(runConnRate), []string{"haproxy", "haproxy2", "socat", "kernel"}, false,
			[]Goal{{Peer: "haproxy/connrate", Metric: "rate", Op: ">=", Ratio: 1.0}},
			[]Goal{{Peer: "haproxy/connrate", Metric: "rate", Op: ">=", Ratio: 0.8}}, false, true},
		// socat forks a process per stream (memory not comparable by
		// parent RSS); the kernel holds no user-space state. A held
		// stream through the tunnel costs at most 16 KiB, edge and
		// connector together.
		{"streams", "l4-streams", streamMetrics, estStrm, runStreams, []string{"haproxy", "haproxy2"}, true,
			[]Goal{{Peer: "haproxy/streams", Metric: "per_stream", Op: "<=", Ratio: 2.0}},
			[]Goal{{Metric: "per_stream", Op: "<=", Limit: 16}}, false, false},
	} {
		goals := func(transport string) []Goal {
			g := append([]Goal(nil), a.tunnel...)
			if a.own {
				g = append(g, Goal{Peer: "tunnel-" + transport + "/bulk1", Metric: "throughput", Op: ">=", Ratio: 1.0})
			}
			return g
		}
		// The raw relays, where an area has them, run interleaved with the
		// tunnels (a shared Interleave key), as the goals' peers do.
		interleave := ""
		if a.raw {
			interleave = "tunnel/" + a.suffix
		}
		add(Scenario{Name: "tunnel-quic/" + a.suffix, Area: a.area, Label: "onramp tunnel, QUIC", Onramp: true, Setup: setupTunnel,
			Goals: goals("quic"), Metrics: a.metrics, Estimate: a.est, Start: tq, Run: a.run, FreshPerRun: a.fresh, Interleave: interleave})
		add(Scenario{Name: "tunnel-http2/" + a.suffix, Area: a.area, Label: "onramp tunnel, HTTP/2", Onramp: true, Setup: setupTunnel,
			Goals: goals("http2"), Metrics: a.metrics, Estimate: a.est, Start: th, Run: a.run, FreshPerRun: a.fresh, Interleave: interleave})
		s = append(s, directScenarios(a.suffix, a.area, a.metrics, a.est, a.run, a.fresh, a.direct)...)
		for _, p := range a.peers {
			sc := Scenario{Name: p + "/" + a.suffix, Area: a.area, PeerOf: onrampL4(a.suffix),
				Metrics: a.metrics, Estimate: a.est, Run: a.run, FreshPerRun: a.fresh}
			switch p {
			case "haproxy":
				sc.Label, sc.Setup, sc.Start = "HAProxy TCP (splice)", setupHAP, startHAProxy
			case "haproxy2":
				sc.Label, sc.Setup, sc.Start = "two HAProxies in series (the tunnel's shape)", setupHAP2, startHAProxyChain
			case "socat":
				sc.Label, sc.Setup, sc.Start = "socat", setupSocat, startSocat
			case "kernel":
				sc.Label, sc.Setup, sc.Start = "kernel routing (ceiling)", setupKernel, startKernel
			}
			add(sc)
		}
		// What the transport alone costs a round trip or a new stream:
		// the same relay shape with nothing of onramp's in it.
		service := "echo"
		if a.suffix == "bulk8" {
			service = "bulk"
		}
		if a.raw {
			add(Scenario{Name: "rawquic/" + a.suffix, Area: a.area, Label: "raw quic-go relay", PeerOf: []string{"tunnel-quic/" + a.suffix},
				Setup: setupRawQ, Metrics: a.metrics, Estimate: a.est, Start: startRawRelayTo("rawquic", "udp", service), Run: a.run, Interleave: interleave})
		}
		// The raw TLS relay dials a TLS connection per user connection, so
		// it is a floor for a round trip on a warm one, or for eight streams
		// each on a connection of its own, not for a new stream (the HTTP/2
		// tunnel opens streams on a warm connection).
		if a.raw && a.suffix != "connrate" {
			add(Scenario{Name: "rawtls/" + a.suffix, Area: a.area, Label: "raw TLS-over-TCP relay", PeerOf: []string{"tunnel-http2/" + a.suffix},
				Setup: setupRawT, Metrics: a.metrics, Estimate: a.est, Start: startRawRelayTo("rawtls", "tcp", service), Run: a.run, Interleave: interleave})
		}
	}
	s = append(s, scaleScenarios()...)     // scale.go
	s = append(s, firstByteScenarios()...) // scenarios_rtt.go

	s = append(s, l3Scenarios()...)
	s = append(s, xdpScenarios()...)   // xdp.go
	s = append(s, steerScenarios()...) // l3steer.go

	add(Scenario{Name: "go/microbench", Area: "go", Label: "go test -bench", Onramp: true, Reps: 1,
		Setup:   "the module's Go benchmarks, all CPUs",
		Metrics: []Metric{{Name: "benchmarks", Unit: ""}}, Estimate: estGo, Start: startNothing, Run: runGoBench})
	return s
}
