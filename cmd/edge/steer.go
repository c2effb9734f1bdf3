package main

import (
	"log/slog"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onramp-net/onramp/cmd/edge/edgeconfig"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

// quicSockets is tunnel.Config.QUICSockets for cfg: 0 (one per core,
// steered) unless quic_steering is false (1).
func quicSockets(cfg *edgeconfig.Config) int {
	if cfg.Steering() {
		return 0
	}
	return 1
}

// logSteering says once how the QUIC listener runs: how many steered
// sockets, or why it runs one; and registers the steering counters.
func logSteering(cfg *edgeconfig.Config, qln *tunnel.QUICListener, log *slog.Logger, reg prometheus.Registerer) {
	n, err := qln.Steering()
	switch {
	case !cfg.Steering():
		log.Info("quic steering off (quic_steering: false): 1 socket")
	case err != nil:
		log.Warn("quic steering off: the QUIC listener runs 1 socket", "err", err)
	case n == 1:
		log.Info("quic steering off: 1 core, 1 socket")
	default:
		log.Info("quic steering: "+strconv.Itoa(n)+" sockets", "sockets", n)
		reg.MustRegister(steerCollector{qln})
	}
}

var descSteer = prometheus.NewDesc("onramp_edge_quic_steered_datagrams_total",
	"Datagrams the QUIC steering program handed to each socket of the tunnel listener: by the connection ID the edge issued (by=conn_id) "+
		"or, for Initials and unknown IDs, by the kernel's 4-tuple hash (by=hash). A GSO or GRO batch counts once.",
	[]string{"socket", "by"}, nil)

// steerCollector reads the steering counters at each scrape.
type steerCollector struct{ l *tunnel.QUICListener }

func (c steerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descSteer }

func (c steerCollector) Collect(ch chan<- prometheus.Metric) {
	per, err := c.l.SteeringCounts()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descSteer, err)
		return
	}
	for i, n := range per {
		s := strconv.Itoa(i)
		ch <- prometheus.MustNewConstMetric(descSteer, prometheus.CounterValue, float64(n.ConnID), s, "conn_id")
		ch <- prometheus.MustNewConstMetric(descSteer, prometheus.CounterValue, float64(n.Hash), s, "hash")
	}
}
