package hub

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onramp-net/onramp/l3router"
	"github.com/onramp-net/onramp/l3router/wg"
)

// TestMetricsBounded: the hub's series do not grow with its clients. An
// edge with 10,000 clients exports the same series, by name and label
// set, as one with 2: clients are counted by kind; only connectors have
// series of their own. The handshake limits of the configuration reach
// the device and are exported.
func TestMetricsBounded(t *testing.T) {
	many := 10000
	if testing.Short() || raceEnabled {
		many = 1000
	}
	limits := wg.HandshakeLimits{PerSecond: 1234, PerSourcePerSecond: 7, PerSourceBurst: 3, MaxSources: 999}
	pools := Pools{IPv4: netip.MustParsePrefix("198.18.0.0/16"), IPv6: netip.MustParsePrefix("fd00:97::/48")}
	scrape := func(clients int) (series []string, reg *prometheus.Registry) {
		t.Helper()
		peers := []Peer{connector(t, "site-a", "198.19.30.0/24"), connector(t, "site-b", "198.19.31.0/24")}
		peers[0].Address4, peers[1].Address4 = netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.3")
		for i := range clients {
			c := Peer{Name: fmt.Sprintf("c%05d", i), Kind: l3router.KindClient}
			rand.Read(c.PublicKey[:]) // as good as a real key here, and cheaper
			c.Address4 = netip.AddrFrom4([4]byte{198, 18, byte(1 + i/256), byte(i)})
			c.Address6 = netip.AddrFrom16([16]byte{0xfd, 0, 0, 0x97, 14: byte(1 + i/256), 15: byte(i)})
			peers = append(peers, c)
		}
		h, err := New(Config{PrivateKey: newKey(t), Pools: pools, Loops: 1, Handshakes: limits,
			Logger: slog.New(slog.DiscardHandler)}, peers)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		// A removed client leaves no series either.
		if _, err := h.RemovePeer(peers[2].Name); err != nil {
			t.Fatal(err)
		}
		reg = prometheus.NewPedanticRegistry()
		reg.MustRegister(h.Collector())
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				var labels []string
				for _, l := range m.GetLabel() {
					v := l.GetValue()
					if l.GetName() == "peer" && !strings.HasPrefix(v, "site-") {
						t.Errorf("%s has a series of client %q", mf.GetName(), v)
					}
					labels = append(labels, l.GetName()+"="+v)
				}
				series = append(series, mf.GetName()+"{"+strings.Join(labels, ",")+"}")
			}
		}
		return series, reg
	}
	few, _ := scrape(2)
	lots, reg := scrape(many)
	t.Logf("%d series with 2 clients, %d with %d", len(few), len(lots), many)
	if !slices.Equal(few, lots) {
		t.Fatalf("the series differ with 2 and %d clients:\n%s\n---\n%s", many, strings.Join(few, "\n"), strings.Join(lots, "\n"))
	}
	if v := gathered(t, reg, "onramp_edge_l3_peers", "client"); v != float64(many-1) {
		t.Errorf("onramp_edge_l3_peers{kind=client} %v, want %d", v, many-1)
	}
	for name, want := range map[string]int{"per_second": 1234, "per_source_per_second": 7, "per_source_burst": 3, "max_sources": 999} {
		if v := gathered(t, reg, "onramp_edge_l3_handshake_limit", name); v != float64(want) {
			t.Errorf("onramp_edge_l3_handshake_limit{limit=%s} %v, want %d", name, v, want)
		}
	}
	if v := gathered(t, reg, "onramp_edge_l3_handshake_under_load"); v != 0 {
		t.Errorf("under load with no traffic: %v", v)
	}
	for _, want := range []string{
		`onramp_edge_l3_datagram_drops_total{reason=replay}`,
		`onramp_edge_l3_handshake_messages_sent_total{type=cookie_reply}`,
		`onramp_edge_l3_handshake_datagrams_received_total{type=initiation}`,
		`onramp_edge_l3_handshakes_completed_total{}`,
		`onramp_edge_l3_handshake_under_load_entered_total{}`,
		`onramp_edge_l3_drops_total{kind=client,reason=acl}`,
		`onramp_edge_l3_peer_last_handshake_seconds{kind=connector,peer=site-b}`,
	} {
		if !slices.Contains(lots, want) {
			t.Errorf("no series %s", want)
		}
	}
}
