package main

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onramp-net/onramp/cmd/edge/edgeconfig"
	"github.com/onramp-net/onramp/dataplane/prefilter"
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

// TestConnectorProven: a connector connection that registered proves its
// source to the pre-filter (its QUIC Initials then pass the ceiling on
// unproven sources), an IPv6 source by its /64.
func TestConnectorProven(t *testing.T) {
	f := loadPrefilter(t)
	a := &app{}
	a.onConnected(&net.UDPAddr{IP: net.ParseIP("198.18.5.1"), Port: 4000}) // no filter: nothing to do
	a.xdp.Store(f)
	a.onConnected(&net.UDPAddr{IP: net.ParseIP("198.18.5.1"), Port: 4000})
	a.onConnected(&net.TCPAddr{IP: net.ParseIP("fd00:5::1"), Port: 4000})
	for addr, want := range map[string]bool{"198.18.5.1": true, "fd00:5::77": true, "198.18.5.2": false, "fd00:6::1": false} {
		if got := f.Proven(netip.MustParseAddr(addr)); got != want {
			t.Errorf("%s proven: %v, want %v", addr, got, want)
		}
	}
}

// loadPrefilter loads the XDP pre-filter (attached nowhere), closed when
// the test ends; it skips the test where eBPF is missing, but not in CI.
func loadPrefilter(t *testing.T) *prefilter.Filter {
	t.Helper()
	f, err := prefilter.Load(prefilter.Config{QUICPort: 7844, QUICConnIDLen: quicConnIDLen})
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and the pre-filter does not load: %v", err)
		}
		t.Skipf("the pre-filter does not load here: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
