package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/onramp-net/onramp/cmd/internal/cli"
	"github.com/onramp-net/onramp/l3router/connector"
	"github.com/onramp-net/onramp/l3router/l3config"
)

// l3Cmd is `connector l3`: the WireGuard on-ramp.
func l3Cmd(logFlags *cli.LogFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "l3",
		Short: "the L3 on-ramp: IP packets between the edge's WireGuard clients and this network",
	}
	cmd.AddCommand(l3InitCmd(), l3RunCmd(logFlags), l3CheckCmd())
	return cmd
}

const noConfig = "--config: the l3.yml file is required (connector l3 init makes the key, edge l3 connector add NAME --public-key KEY prints the file)"

func l3RunCmd(logFlags *cli.LogFlags) *cobra.Command {
	var config, metrics string
	cmd := &cobra.Command{
		Use:   "run --config l3.yml",
		Short: "join this network to the edge over WireGuard until stopped",
		Long: `Create the WireGuard interface named in l3.yml (a kernel TUN with GSO/GRO
offloads), peer with the edge, route the edge's client pools and other sites
through it, and forward between it and the LAN: LAN hosts reach the clients
through this host (route the client pools via its LAN address) and see their
virtual addresses as sources. Needs root (CAP_NET_ADMIN).

/ready on --metrics answers 200 while the last handshake with the edge is
less than 3 minutes old; /status there is what connector status --metrics
ADDR prints (edge endpoint, last handshake, bytes). With several edges sharing
the key (edge.endpoints), the connector keeps a session with each, sends
replies to a client through the edge the client's packets came through, and
other traffic through the first edge that answers.

SIGHUP reads l3.yml again and applies changed
routes, edge endpoints, keepalive or key without dropping the session: after
the edge added or removed another site, write the new file (edge l3 connector
config NAME) and send SIGHUP. Changes to the key, interface, MTU, port or
addresses need a restart and are refused (the connector keeps running as it
was). SIGTERM or SIGINT removes the interface and its routes and exits.

Under systemd (Type=notify; see connector service) it says READY=1 at the
first handshake with an edge, RELOADING=1 and READY=1 around a reload,
STOPPING=1 when it stops, and WATCHDOG=1 every half of WatchdogSec while its
run loop answers.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logFlags.Logger(os.Stderr)
			if err != nil {
				return err
			}
			if config == "" {
				return errors.New(noConfig)
			}
			cfg, err := l3config.LoadConnector(config)
			if err != nil {
				return err
			}
			warnKeyModes(log, cfg, config)
			return runL3(cmd.Context(), log, cfg, config, metrics)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&config, "config", "c", "", "the connector's l3.yml")
	f.StringVar(&metrics, "metrics", "", "serve /metrics, /ready and /status (connector status) on this address (e.g. 127.0.0.1:9201)")
	return cmd
}

// noHandshakeWarning is how long after start a missing first handshake is
// worth a warning.
const noHandshakeWarning = 30 * time.Second

func runL3(ctx context.Context, log *slog.Logger, cfg *l3config.Connector, path, metrics string) error {
	// Signals first: one during start-up still shuts down cleanly.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	started := time.Now()
	c, err := connector.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := c.Close(); err != nil {
			log.Error("stop", "err", err)
		}
	}()
	reg := cli.NewRegistry()
	reg.MustRegister(newL3Collector(c))
	var current atomic.Pointer[l3config.Connector] // cfg, for /status
	current.Store(cfg)
	if metrics != "" {
		status := func() *connectorStatus { return l3StatusOf(c, current.Load(), started) }
		notReady := func() string {
			if c.Ready() {
				return ""
			}
			return "no WireGuard handshake with the edge in the last 3 minutes"
		}
		if err := cli.ServeMetricsWith(ctx, log, metrics, reg, c.Ready, notReady, statusHandler(status)); err != nil {
			return err
		}
	}
	info := c.Info()
	routes := make([]string, len(info.Routes))
	for i, r := range info.Routes {
		routes[i] = r.Dst.String()
	}
	log.Info("l3 connector up", "name", cfg.Name, "interface", info.Interface, "mtu", info.MTU,
		"addresses", joinPrefixes(info.Addresses), "routes", strings.Join(routes, ","),
		"subnets", joinPrefixes(info.Subnets), "edge", strings.Join(cfg.Edge.All(), ","), "edge_addr", joinAddrs(info.EdgeAddrs),
		"edge_key", cfg.Edge.PublicKey.String(), "listen_port", info.Port, "offloads", info.Offloads.String())
	if len(info.ForwardingEnabled) > 0 {
		log.Info("forwarding enabled", "sysctls", strings.Join(info.ForwardingEnabled, ","))
	}

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	sn := newRunNotifier(ctx, log)
	defer sn.close()
	var last, warnedDrops time.Time
	var drops uint64
	ready, lost, warned := false, false, false
	// With several edges, each edge's first handshake and the changes of
	// its liveness are logged.
	edgeHS, edgeLive := map[string]bool{}, map[string]bool{}
	for {
		select {
		case sig := <-sigs:
			sn.stop()
			log.Info("stopping", "signal", sig.String())
			s, _ := c.Stats()
			if err := c.Close(); err != nil {
				return err
			}
			log.Info("l3 connector stopped", "interface", info.Interface, "to_edge_packets", s.ToEdgePackets,
				"from_edge_packets", s.FromEdgePackets)
			return nil
		case <-hup:
			sn.reload(func() error {
				next, err := reloadL3(ctx, log, c, path)
				if err == nil {
					cfg = next
					current.Store(cfg)
				}
				return err
			})
		case reply := <-sn.probes:
			close(reply)
		case <-sn.C:
			// READY=1 at the first handshake with an edge.
			if s, err := c.Stats(); err == nil {
				sn.update(!s.LastHandshake.IsZero(), l3StatusLine(s, time.Now()))
			}
		case <-ctx.Done():
			return ctx.Err()
		case now := <-tick.C:
			s, err := c.Stats()
			if err != nil {
				log.Warn("read WireGuard status", "err", err)
				continue
			}
			if !s.LastHandshake.IsZero() && s.LastHandshake != last {
				if last.IsZero() {
					log.Info("handshake with the edge complete", "edge", s.Endpoint,
						"after", s.LastHandshake.Sub(started).Round(time.Millisecond))
				}
				last = s.LastHandshake
			}
			if len(s.Edges) > 1 {
				logEdges(log, s.Edges, edgeHS, edgeLive, started)
			}
			if s.DroppedDestination > drops && now.Sub(warnedDrops) >= time.Minute {
				log.Warn("packets from the edge to destinations outside the subnets and this host's addresses dropped: "+
					"does the edge route a subnet to this connector that its l3.yml does not list?",
					"dropped", s.DroppedDestination-drops, "subnets", joinPrefixes(cfg.Subnets), "addresses", joinPrefixes(cfg.Addresses))
				drops, warnedDrops = s.DroppedDestination, now
			}
			if last.IsZero() && !warned && now.Sub(started) > noHandshakeWarning {
				warned = true
				log.Warn("no handshake with the edge yet: check edge.endpoint, the keys, and that UDP to the edge is allowed",
					"edge", strings.Join(cfg.Edge.All(), ","), "waited", now.Sub(started).Round(time.Second))
			}
			if r := s.Ready(now); r != ready {
				if !r {
					lost = true
					log.Warn("edge unreachable: no handshake in the last 3 minutes, or the interface is down",
						"last_handshake", last.Format(time.RFC3339), "link_up", s.LinkUp, "edge", s.Endpoint)
				} else if lost {
					log.Info("edge reachable again", "edge", s.Endpoint)
				}
				ready = r
			}
		}
	}
}

// logEdges logs each edge's first handshake and the changes of its
// liveness (new traffic leaves an edge that is not live).
func logEdges(log *slog.Logger, edges []connector.EdgeStats, hs, live map[string]bool, started time.Time) {
	for _, e := range edges {
		if !e.LastHandshake.IsZero() && !hs[e.Endpoint] {
			hs[e.Endpoint] = true
			log.Info("handshake with an edge complete", "edge", e.Endpoint, "after", e.LastHandshake.Sub(started).Round(time.Millisecond))
		}
		was, seen := live[e.Endpoint]
		if seen && was != e.Live {
			if e.Live {
				log.Info("edge live again", "edge", e.Endpoint)
			} else {
				log.Warn("edge stale: not heard from, new traffic goes to another edge", "edge", e.Endpoint)
			}
		}
		if seen || e.Live {
			live[e.Endpoint] = e.Live
		}
	}
}

func joinAddrs(as []netip.AddrPort) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

// reloadL3 reads path again and applies it to c, logging what changed or
// why nothing did; an error says it was refused.
func reloadL3(ctx context.Context, log *slog.Logger, c *connector.Connector, path string) (*l3config.Connector, error) {
	cfg, err := l3config.LoadConnector(path)
	if err == nil {
		var res connector.Reloaded
		if res, err = c.Reload(ctx, cfg); err == nil {
			log.Info("reloaded "+path, "changes", res.String())
			return cfg, nil
		}
	}
	log.Error("reload refused; running the previous configuration", "config", path, "err", err)
	return nil, err
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func l3CheckCmd() *cobra.Command {
	var config string
	cmd := &cobra.Command{
		Use:   "check --config l3.yml",
		Short: "validate l3.yml and print what run would do on this host, changing nothing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if config == "" {
				return errors.New(noConfig)
			}
			cfg, err := l3config.LoadConnector(config)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%s: valid (connector %q)\n\nconnector l3 run would:\n", config, cfg.Name)
			for _, s := range connector.NewPlan(cfg).Steps() {
				fmt.Fprintf(out, "  - %s\n", s)
			}
			if len(cfg.Subnets) > 0 {
				fmt.Fprintf(out, "\nThe edge sends packets for %s here; LAN hosts reach the clients\nwhen they route %s via this host's LAN address.\n",
					joinPrefixes(cfg.Subnets), joinPrefixes(cfg.Routes))
			}
			fmt.Fprintf(out, "\nOn this host now:\n")
			for _, n := range connector.Inspect(cmd.Context(), cfg) {
				fmt.Fprintf(out, "  - %s\n", n)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&config, "config", "c", "", "the connector's l3.yml")
	return cmd
}

// l3Collector exports the connector's Stats, read at each scrape.
type l3Collector struct {
	c                                                    *connector.Connector
	packets, bytes, wgBytes, writeErrs, dropped, hs, rdy *prometheus.Desc
}

func newL3Collector(c *connector.Connector) *l3Collector {
	const p = "onramp_connector_l3_"
	dir := []string{"direction"}
	return &l3Collector{
		c: c,
		packets: prometheus.NewDesc(p+"packets_total",
			"IP packets through the TUN: to_edge read from it (LAN to clients), from_edge written to it.", dir, nil),
		bytes: prometheus.NewDesc(p+"bytes_total",
			"IP bytes through the TUN, by direction as packets_total.", dir, nil),
		wgBytes: prometheus.NewDesc(p+"wireguard_bytes_total",
			"UDP payload bytes to (tx) and from (rx) the edge, WireGuard overhead included.", dir, nil),
		writeErrs: prometheus.NewDesc(p+"tun_write_errors_total",
			"Batches from the edge the kernel refused in part or whole.", nil, nil),
		dropped: prometheus.NewDesc(p+"dropped_packets_total",
			"Packets from the edge dropped, by reason: destination (neither in the subnets nor this host's addresses: not forwarded), "+
				"source (outside the routes, or not an IP packet).", []string{"reason"}, nil),
		hs: prometheus.NewDesc(p+"last_handshake_timestamp_seconds",
			"Unix time of the last handshake with the edge; 0 before the first.", nil, nil),
		rdy: prometheus.NewDesc(p+"ready",
			"1 while the last handshake with the edge is under 3 minutes old and the TUN is up.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (m *l3Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.packets, m.bytes, m.wgBytes, m.writeErrs, m.dropped, m.hs, m.rdy} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *l3Collector) Collect(ch chan<- prometheus.Metric) {
	s, err := m.c.Stats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(m.rdy, err)
		return
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(m.packets, s.ToEdgePackets, "to_edge")
	counter(m.packets, s.FromEdgePackets, "from_edge")
	counter(m.bytes, s.ToEdgeBytes, "to_edge")
	counter(m.bytes, s.FromEdgeBytes, "from_edge")
	counter(m.wgBytes, s.WireGuardTxBytes, "tx")
	counter(m.wgBytes, s.WireGuardRxBytes, "rx")
	counter(m.writeErrs, s.TUNWriteErrors)
	counter(m.dropped, s.DroppedDestination, "destination")
	counter(m.dropped, s.DroppedSource, "source")
	var hs float64
	if !s.LastHandshake.IsZero() {
		hs = float64(s.LastHandshake.UnixNano()) / 1e9
	}
	ch <- prometheus.MustNewConstMetric(m.hs, prometheus.GaugeValue, hs)
	var r float64
	if s.Ready(time.Now()) {
		r = 1
	}
	ch <- prometheus.MustNewConstMetric(m.rdy, prometheus.GaugeValue, r)
}
