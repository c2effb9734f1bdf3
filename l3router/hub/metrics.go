package hub

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/onramp-net/onramp/l3router"
)

// Metric names and their labels. Per-peer series exist while the peer is
// live; a removed peer's series disappear.
var (
	descPeers = prometheus.NewDesc("onramp_edge_l3_peers",
		"Live L3 peers on the edge by kind.", []string{"kind"}, nil)
	descRxPackets = prometheus.NewDesc("onramp_edge_l3_peer_rx_packets_total",
		"Packets the edge router received from an L3 peer (decrypted), whatever became of them.", []string{"peer", "kind"}, nil)
	descRxBytes = prometheus.NewDesc("onramp_edge_l3_peer_rx_bytes_total",
		"IP bytes the edge router received from an L3 peer.", []string{"peer", "kind"}, nil)
	descTxPackets = prometheus.NewDesc("onramp_edge_l3_peer_tx_packets_total",
		"Packets the edge router queued for an L3 peer (forwarded packets and ICMP errors).", []string{"peer", "kind"}, nil)
	descTxBytes = prometheus.NewDesc("onramp_edge_l3_peer_tx_bytes_total",
		"IP bytes the edge router queued for an L3 peer.", []string{"peer", "kind"}, nil)
	descDrops = prometheus.NewDesc("onramp_edge_l3_peer_drops_total",
		"Packets from an L3 peer the edge router dropped, by reason.", []string{"peer", "kind", "reason"}, nil)
	descHandshake = prometheus.NewDesc("onramp_edge_l3_peer_last_handshake_seconds",
		"Unix time of an L3 peer's last WireGuard handshake; 0 if none yet.", []string{"peer", "kind"}, nil)
	descUnattributed = prometheus.NewDesc("onramp_edge_l3_unattributed_drops_total",
		"Packets the edge router dropped without a peer to blame (malformed, or a source no peer owns), by reason.", []string{"reason"}, nil)
	descICMP = prometheus.NewDesc("onramp_edge_l3_icmp_errors_total",
		"ICMP errors of the edge router: sent, or not sent because of the rate limit or a full queue.", []string{"result"}, nil)
	descHandshakes = prometheus.NewDesc("onramp_edge_l3_handshake_messages_total",
		"WireGuard handshake messages (with a valid mac1) the edge received, by result: processed (within the device's 2000/s while not under load); "+
			"processed_under_load (with a valid mac2, within the source's limit); cookie (under load, answered with a cookie reply); "+
			"over_budget (the device's 2000/s, not under load); source_limit (under load, 20/s per IPv4 address or IPv6 /64); "+
			"table_full (under load, a new source while 16384 are tracked).", []string{"result"}, nil)
	descHandshakeRejected = prometheus.NewDesc("onramp_edge_l3_handshake_rejected_total",
		"WireGuard handshake messages processed (with a valid mac1, within the budget) that the handshake refused, by reason: "+
			"invalid (failed authentication or a low-order key), unknown_peer (an initiation from a key that is no peer's), "+
			"replay (an initiation not newer than the last accepted), flood (an initiation within 1/50 s of the last accepted), "+
			"stray_response (a response to no initiation in progress).", []string{"reason"}, nil)
	descHandshakeSources = prometheus.NewDesc("onramp_edge_l3_handshake_limited_sources",
		"Sources (IPv4 addresses, IPv6 /64s) with a handshake limit the edge tracks now.", nil, nil)
)

// Collector returns a Prometheus collector of the hub's counters, read at
// each scrape.
func (h *Hub) Collector() prometheus.Collector { return collector{h} }

type collector struct{ h *Hub }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPeers, descRxPackets, descRxBytes, descTxPackets, descTxBytes,
		descDrops, descHandshake, descUnattributed, descICMP, descHandshakes, descHandshakeRejected, descHandshakeSources} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s, err := c.h.Stats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descPeers, err)
		return
	}
	count := map[l3router.PeerKind]float64{l3router.KindClient: 0, l3router.KindConnector: 0}
	cnt := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, p := range s.Peers {
		kind := p.Kind.String()
		count[p.Kind]++
		cnt(descRxPackets, p.Router.RxPackets, p.Name, kind)
		cnt(descRxBytes, p.Router.RxBytes, p.Name, kind)
		cnt(descTxPackets, p.Router.TxPackets, p.Name, kind)
		cnt(descTxBytes, p.Router.TxBytes, p.Name, kind)
		for r, v := range p.Router.Drops {
			cnt(descDrops, v, p.Name, kind, l3router.DropReason(r).String())
		}
		hs := 0.0
		if !p.LastHandshake.IsZero() {
			hs = float64(p.LastHandshake.UnixNano()) / 1e9
		}
		ch <- prometheus.MustNewConstMetric(descHandshake, prometheus.GaugeValue, hs, p.Name, kind)
	}
	for k, n := range count {
		ch <- prometheus.MustNewConstMetric(descPeers, prometheus.GaugeValue, n, k.String())
	}
	for r, v := range s.Unattributed {
		cnt(descUnattributed, v, l3router.DropReason(r).String())
	}
	cnt(descICMP, s.ICMPErrors, "sent")
	cnt(descICMP, s.ICMPRateLimited, "rate_limited")
	cnt(descICMP, s.ICMPQueueFull, "queue_full")
	hs := s.Handshakes
	cnt(descHandshakes, hs.Processed, "processed")
	cnt(descHandshakes, hs.Proven, "processed_under_load")
	cnt(descHandshakes, hs.Cookies, "cookie")
	cnt(descHandshakes, hs.OverBudget, "over_budget")
	cnt(descHandshakes, hs.SourceLimited, "source_limit")
	cnt(descHandshakes, hs.TableFull, "table_full")
	for reason, n := range hs.Rejected {
		cnt(descHandshakeRejected, n, reason)
	}
	ch <- prometheus.MustNewConstMetric(descHandshakeSources, prometheus.GaugeValue, float64(hs.Sources))
}
