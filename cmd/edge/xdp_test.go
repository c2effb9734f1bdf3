package main

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onramp-net/onramp/cmd/edge/edgeconfig"
)

// TestXDPUnavailable: where the pre-filter cannot attach (here: an
// interface that does not exist; elsewhere: no eBPF, no capability) the
// edge says so in one warning and goes on without it; with no interfaces
// configured it says nothing.
func TestXDPUnavailable(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	quic := &net.UDPAddr{IP: net.IPv4(198, 18, 0, 1), Port: 7844}
	if c := startXDP(&edgeconfig.Config{}, quic, log, prometheus.NewRegistry()); c != nil || logs.Len() != 0 {
		t.Fatalf("no interfaces: close %v, log %q; want nothing", c != nil, logs.String())
	}
	cfg := &edgeconfig.Config{XDP: edgeconfig.XDP{Interfaces: []string{"onrampnone0"}}}
	if c := startXDP(cfg, quic, log, prometheus.NewRegistry()); c != nil {
		c.Close()
		t.Fatal("the pre-filter started on an interface that does not exist")
	}
	out := logs.String()
	if n := strings.Count(out, "\n"); n != 1 || !strings.Contains(out, "level=WARN") || !strings.Contains(out, "xdp pre-filter off") {
		t.Fatalf("log %q: want one warning that the pre-filter is off", out)
	}
}
