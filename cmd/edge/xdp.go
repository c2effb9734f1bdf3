package main

import (
	"log/slog"
	"net"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onramp-net/onramp/cmd/edge/edgeconfig"
	"github.com/onramp-net/onramp/dataplane/prefilter"
	"github.com/onramp-net/onramp/dataplane/steer"
)

// quicConnIDLen is the length of the connection IDs the tunnel listener's
// quic-go Transports issue (dataplane/steer's, steered or not): the
// pre-filter needs it to check a short header.
const quicConnIDLen = steer.ConnIDLen

// startXDP loads the pre-filter for the QUIC listener at quicAddr and the
// WireGuard hub (if on) and attaches it to the configured interfaces. It
// returns the filter, or nil if it is off or could not start, in which
// case it says why, once.
func startXDP(cfg *edgeconfig.Config, quicAddr net.Addr, log *slog.Logger, reg prometheus.Registerer) *prefilter.Filter {
	if len(cfg.XDP.Interfaces) == 0 {
		return nil
	}
	x := cfg.XDP.WithDefaults()
	pc := prefilter.Config{QUICConnIDLen: quicConnIDLen, Limits: prefilter.Limits{
		PerSource: x.PerSourcePerSecond, PerSourceBurst: x.PerSourceBurst, Unproven: x.UnprovenPerSecond, UnprovenBurst: x.UnprovenBurst}}
	if a, ok := quicAddr.(*net.UDPAddr); ok {
		pc.QUICPort = uint16(a.Port)
	}
	if cfg.L3.Enabled() {
		pc.WireGuardPort = uint16(cfg.L3.ListenPort())
	}
	f, err := prefilter.Load(pc)
	if err != nil {
		log.Warn("xdp pre-filter off: the edge runs without it", "err", err)
		return nil
	}
	for _, ifname := range cfg.XDP.Interfaces {
		if err := f.Attach(ifname); err != nil {
			log.Warn("xdp pre-filter off: the edge runs without it", "err", err)
			f.Close()
			return nil
		}
		log.Info("xdp pre-filter attached", "interface", ifname, "mode", f.Mode(ifname),
			"quic_port", pc.QUICPort, "wireguard_port", pc.WireGuardPort)
	}
	reg.MustRegister(xdpCollector{f})
	return f
}

var descXDP = prometheus.NewDesc("onramp_edge_xdp_packets_total",
	"Packets the XDP pre-filter saw on the edge's public interfaces, by verdict: pass_other (not UDP to the tunnel or WireGuard port), "+
		"pass_wireguard, pass_quic; dropped: wireguard_truncated, wireguard_type, wireguard_reserved, wireguard_length, "+
		"quic_truncated, quic_fixed_bit, quic_conn_id_length, quic_small_initial (an Initial in a datagram under 1200 bytes); "+
		"wireguard_source_rate, quic_source_rate (an initiation or Initial over xdp.per_source_per_second), "+
		"wireguard_global_rate, quic_global_rate (one from a source the edge has not proven, over xdp.unproven_per_second).",
	[]string{"reason"}, nil)

// xdpCollector reads the pre-filter's counters at each scrape.
type xdpCollector struct{ f *prefilter.Filter }

func (c xdpCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descXDP }

func (c xdpCollector) Collect(ch chan<- prometheus.Metric) {
	counts, err := c.f.Counts()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descXDP, err)
		return
	}
	for r, n := range counts {
		ch <- prometheus.MustNewConstMetric(descXDP, prometheus.CounterValue, float64(n), prefilter.Reason(r).String())
	}
}

// onConnected proves the source of a connector connection that registered
// to the XDP pre-filter, if it runs: its QUIC Initials then pass the
// ceiling on unproven sources.
func (a *app) onConnected(remote net.Addr) {
	f := a.xdp.Load()
	if f == nil {
		return
	}
	var ap netip.AddrPort
	switch r := remote.(type) {
	case *net.UDPAddr:
		ap = r.AddrPort()
	case *net.TCPAddr:
		ap = r.AddrPort()
	default:
		return
	}
	_ = f.Prove(ap.Addr())
}
