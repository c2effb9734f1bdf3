package hub

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onramp-net/onramp/l3router"
	"github.com/onramp-net/onramp/l3router/wg"
)

// Metric names and their labels. Every label set is bounded whatever the
// number of peers: clients, who may number tens of thousands, are counted
// by kind only (per client figures are in `edge l3 client list`);
// connectors, which an operator registers one by one for the sites, also
// have series of their own, while they are live.
var (
	descPeers = prometheus.NewDesc("onramp_edge_l3_peers",
		"Live L3 peers on the edge by kind.", []string{"kind"}, nil)

	// By kind, removed peers included.
	descKindRxPackets = prometheus.NewDesc("onramp_edge_l3_rx_packets_total",
		"Packets the edge router received from L3 peers of a kind (decrypted), whatever became of them.", []string{"kind"}, nil)
	descKindRxBytes = prometheus.NewDesc("onramp_edge_l3_rx_bytes_total",
		"IP bytes the edge router received from L3 peers of a kind.", []string{"kind"}, nil)
	descKindTxPackets = prometheus.NewDesc("onramp_edge_l3_tx_packets_total",
		"Packets the edge router queued for L3 peers of a kind (forwarded packets and ICMP errors).", []string{"kind"}, nil)
	descKindTxBytes = prometheus.NewDesc("onramp_edge_l3_tx_bytes_total",
		"IP bytes the edge router queued for L3 peers of a kind.", []string{"kind"}, nil)
	descKindDrops = prometheus.NewDesc("onramp_edge_l3_drops_total",
		"Packets from L3 peers of a kind the edge router dropped, by reason.", []string{"kind", "reason"}, nil)

	// Per connector.
	descRxPackets = prometheus.NewDesc("onramp_edge_l3_peer_rx_packets_total",
		"Packets the edge router received from an L3 connector (decrypted), whatever became of them.", []string{"peer", "kind"}, nil)
	descRxBytes = prometheus.NewDesc("onramp_edge_l3_peer_rx_bytes_total",
		"IP bytes the edge router received from an L3 connector.", []string{"peer", "kind"}, nil)
	descTxPackets = prometheus.NewDesc("onramp_edge_l3_peer_tx_packets_total",
		"Packets the edge router queued for an L3 connector (forwarded packets and ICMP errors).", []string{"peer", "kind"}, nil)
	descTxBytes = prometheus.NewDesc("onramp_edge_l3_peer_tx_bytes_total",
		"IP bytes the edge router queued for an L3 connector.", []string{"peer", "kind"}, nil)
	descDrops = prometheus.NewDesc("onramp_edge_l3_peer_drops_total",
		"Packets from an L3 connector the edge router dropped, by reason.", []string{"peer", "kind", "reason"}, nil)
	descHandshake = prometheus.NewDesc("onramp_edge_l3_peer_last_handshake_seconds",
		"Unix time of an L3 connector's last WireGuard handshake; 0 if none yet.", []string{"peer", "kind"}, nil)

	descUnattributed = prometheus.NewDesc("onramp_edge_l3_unattributed_drops_total",
		"Packets the edge router dropped without a peer to blame (malformed, or a source no peer owns), by reason.", []string{"reason"}, nil)
	descICMP = prometheus.NewDesc("onramp_edge_l3_icmp_errors_total",
		"ICMP errors of the edge router: sent, or not sent because of the rate limit.", []string{"result"}, nil)

	// The WireGuard device.
	descDatagramDrops = prometheus.NewDesc("onramp_edge_l3_datagram_drops_total",
		"WireGuard datagrams the edge dropped before a session or the handshake, by reason: malformed (too short, no message type); "+
			"no_session (unknown receiver index or expired session); decrypt (failed authentication); "+
			"replay (counter already received or behind the replay window).", []string{"reason"}, nil)
	descHandshakes = prometheus.NewDesc("onramp_edge_l3_handshake_messages_total",
		"WireGuard handshake messages (with a valid mac1) the edge received, by result: processed (within l3.handshakes.per_second while not under load); "+
			"processed_under_load (with a valid mac2, within the source's limit); cookie (under load, answered with a cookie reply); "+
			"over_budget (l3.handshakes.per_second, not under load); source_limit (under load, l3.handshakes.per_source_per_second per IPv4 address or IPv6 /64); "+
			"table_full (under load, a new source while l3.handshakes.max_sources are tracked).", []string{"result"}, nil)
	descHandshakeRejected = prometheus.NewDesc("onramp_edge_l3_handshake_rejected_total",
		"WireGuard handshake messages processed (with a valid mac1, within the budget) that the handshake refused, by reason: "+
			"invalid (failed authentication or a low-order key), unknown_peer (an initiation from a key that is no peer's), "+
			"replay (an initiation not newer than the last accepted), flood (an initiation within 1/50 s of the last accepted), "+
			"stray_response (a response to no initiation in progress).", []string{"reason"}, nil)
	descHandshakeSources = prometheus.NewDesc("onramp_edge_l3_handshake_limited_sources",
		"Sources (IPv4 addresses, IPv6 /64s) with a handshake limit the edge tracks now.", nil, nil)
	descHandshakeReceived = prometheus.NewDesc("onramp_edge_l3_handshake_datagrams_received_total",
		"WireGuard datagrams of a handshake type the edge received, whatever their size or mac1, by type.", []string{"type"}, nil)
	descHandshakeSent = prometheus.NewDesc("onramp_edge_l3_handshake_messages_sent_total",
		"WireGuard handshake messages the edge sent, by type (initiations, responses, cookie replies).", []string{"type"}, nil)
	descHandshakesCompleted = prometheus.NewDesc("onramp_edge_l3_handshakes_completed_total",
		"WireGuard handshakes the edge completed, as initiator or responder.", nil, nil)
	descUnderLoad = prometheus.NewDesc("onramp_edge_l3_handshake_under_load",
		"1 while the edge's WireGuard device is under load (more than half of its handshake budget, l3.handshakes.per_second, spent now or less than a second ago): "+
			"it answers with cookie replies and limits each source.", nil, nil)
	descUnderLoadEntered = prometheus.NewDesc("onramp_edge_l3_handshake_under_load_entered_total",
		"Times the edge's WireGuard device went under load.", nil, nil)
	descHandshakeLimits = prometheus.NewDesc("onramp_edge_l3_handshake_limit",
		"The edge's handshake limits (edge.yml l3.handshakes), by name.", []string{"limit"}, nil)
	descStagedPackets = prometheus.NewDesc("onramp_edge_l3_staged_packets",
		"Packets the edge holds for L3 peers without a session until their handshake completes.", nil, nil)
	descStagedBytes = prometheus.NewDesc("onramp_edge_l3_staged_bytes",
		"Bytes the edge holds for L3 peers without a session, as l3.max_staged_bytes counts them.", nil, nil)
	descStagedDrops = prometheus.NewDesc("onramp_edge_l3_staged_drops_total",
		"Packets held for L3 peers without a session that the edge dropped, by reason: peer_full (the peer's 128 were held: its oldest went); "+
			"device_full (l3.max_staged_bytes reached); expired (older than a handshake attempt, 90 s, or the handshake gave up); "+
			"removed (with their peer).", []string{"reason"}, nil)
	descSteered = prometheus.NewDesc("onramp_edge_l3_steered_datagrams_total",
		"WireGuard datagrams the eBPF steering program put on each socket (l3.steering), by family and socket: handshake (handshake messages and garbage), "+
			"loop1, loop2, ... (transport messages, by their receiver index); unsteered, those it could not place (the kernel's hash did). "+
			"A batch the kernel's UDP GRO made of one peer's datagrams counts once.", []string{"family", "socket"}, nil)
	descSteeredPeers = prometheus.NewDesc("onramp_edge_l3_steered_peers",
		"L3 peers whose sessions the steering program keeps on each receive loop.", []string{"socket"}, nil)
)

// Label values of the handshake message types.
var hsTypes = []string{"initiation", "response", "cookie_reply"}

// Collector returns a Prometheus collector of the hub's counters, read at
// each scrape.
func (h *Hub) Collector() prometheus.Collector { return collector{h} }

type collector struct{ h *Hub }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPeers,
		descKindRxPackets, descKindRxBytes, descKindTxPackets, descKindTxBytes, descKindDrops,
		descRxPackets, descRxBytes, descTxPackets, descTxBytes, descDrops, descHandshake,
		descUnattributed, descICMP, descDatagramDrops, descHandshakes, descHandshakeRejected, descHandshakeSources,
		descHandshakeReceived, descHandshakeSent, descHandshakesCompleted, descUnderLoad, descUnderLoadEntered,
		descHandshakeLimits, descStagedPackets, descStagedBytes, descStagedDrops, descSteered, descSteeredPeers,
		descFailovers, descSubnetActive, descSubnetFresh} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s, err := c.h.Stats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descPeers, err)
		return
	}
	cnt := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	count := map[l3router.PeerKind]float64{l3router.KindClient: 0, l3router.KindConnector: 0}
	for _, p := range s.Peers {
		count[p.Kind]++
		if p.Kind != l3router.KindConnector {
			continue
		}
		kind := p.Kind.String()
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
		gauge(descHandshake, hs, p.Name, kind)
	}
	for k, n := range count {
		gauge(descPeers, n, k.String())
	}
	for k, t := range s.Kinds {
		kind := k.String()
		cnt(descKindRxPackets, t.RxPackets, kind)
		cnt(descKindRxBytes, t.RxBytes, kind)
		cnt(descKindTxPackets, t.TxPackets, kind)
		cnt(descKindTxBytes, t.TxBytes, kind)
		for r, v := range t.Drops {
			cnt(descKindDrops, v, kind, l3router.DropReason(r).String())
		}
	}
	for r, v := range s.Unattributed {
		cnt(descUnattributed, v, l3router.DropReason(r).String())
	}
	cnt(descICMP, s.ICMPErrors, "sent")
	cnt(descICMP, s.ICMPRateLimited, "rate_limited")
	for r, v := range s.Drops {
		cnt(descDatagramDrops, v, wg.DatagramDrop(r).String())
	}
	hs := s.Handshakes
	cnt(descHandshakes, hs.Processed, "processed")
	cnt(descHandshakes, hs.Proven, "processed_under_load")
	cnt(descHandshakes, hs.Cookies, "cookie")
	cnt(descHandshakes, hs.OverBudget, "over_budget")
	cnt(descHandshakes, hs.SourceLimited, "source_limit")
	cnt(descHandshakes, hs.TableFull, "table_full")
	gauge(descHandshakeSources, float64(hs.Sources))
	for i, v := range []uint64{hs.InitiationsReceived, hs.ResponsesReceived, hs.CookieRepliesReceived} {
		cnt(descHandshakeReceived, v, hsTypes[i])
	}
	for i, v := range []uint64{hs.InitiationsSent, hs.ResponsesSent, hs.Cookies} {
		cnt(descHandshakeSent, v, hsTypes[i])
	}
	cnt(descHandshakesCompleted, hs.Completed)
	under := 0.0
	if hs.UnderLoad {
		under = 1
	}
	gauge(descUnderLoad, under)
	cnt(descUnderLoadEntered, hs.UnderLoadEntered)
	l := s.Limits
	for _, v := range []struct {
		name string
		v    int
	}{
		{"per_second", l.PerSecond}, {"per_source_per_second", l.PerSourcePerSecond},
		{"per_source_burst", l.PerSourceBurst}, {"max_sources", l.MaxSources},
	} {
		gauge(descHandshakeLimits, float64(v.v), v.name)
	}
	sg := s.Staging
	gauge(descStagedPackets, float64(sg.Packets))
	gauge(descStagedBytes, float64(sg.Bytes))
	cnt(descStagedDrops, sg.PeerFull, "peer_full")
	cnt(descStagedDrops, sg.DeviceFull, "device_full")
	cnt(descStagedDrops, sg.Expired, "expired")
	cnt(descStagedDrops, sg.Removed, "removed")
	if st, err := c.h.dev.Steering(); err != nil {
		ch <- prometheus.NewInvalidMetric(descSteered, err)
	} else if st.On {
		socket := func(slot int) string {
			if slot == 0 {
				return "handshake"
			}
			return "loop" + strconv.Itoa(slot)
		}
		for fam, by := range map[string][]uint64{"ipv4": st.V4, "ipv6": st.V6} {
			for slot, n := range by {
				cnt(descSteered, n, fam, socket(slot))
			}
		}
		cnt(descSteered, st.Unsteered, "any", "unsteered")
		for slot := 1; slot < len(st.Peers); slot++ {
			gauge(descSteeredPeers, float64(st.Peers[slot]), socket(slot))
		}
	}
	for reason, n := range hs.Rejected {
		cnt(descHandshakeRejected, n, reason)
	}
	collectFailover(c.h, ch)
}
