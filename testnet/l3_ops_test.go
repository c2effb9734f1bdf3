package testnet_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/onramp-net/onramp/testnet"
)

// cookieIgnoringFlood: an attacker floods the edge's WireGuard port with
// initiations (a valid mac1) from addresses of a /64 and never answers a
// cookie reply, as a spoofing one cannot (run alone, the /64 does not even
// route back to it). The edge goes under load and
// stays there while the flood lasts: it processes none of the flood's
// messages (each would cost it Diffie-Hellmans) but the first half of its
// budget, instead of half its budget every time the budget refilled; alice
// keeps being served; the edge's metrics show it.
func (e *l3HardenEnv) cookieIgnoringFlood(t *testing.T) {
	client := e.n.Node("client")
	loop := e.alicePings()
	defer loop.Stop()
	metrics := func() string { return e.metrics(t) }
	const hs = "onramp_edge_l3_handshake_messages_total"
	value := func(m, name string, labels ...string) float64 { return testnet.MetricValue(m, name, labels...) }
	const (
		rate     = 20000 // initiations a second, ten times the edge's budget (2000/s)
		duration = 10 * time.Second
	)
	edge6 := netip.AddrPortFrom(testnet.L3Edge6, testnet.L3EdgePort)
	flood, err := client.StartSpoofedHandshakeFlood(floodPrefix, 40001, edge6, e.alice.EdgePublicKey, rate, duration)
	if err != nil {
		t.Fatal(err)
	}
	defer flood.Stop()
	m0 := metrics()
	var m1 string
	if err := waitFor(5*time.Second, func() bool {
		m1 = metrics()
		return value(m1, hs, `result="cookie"`) > value(m0, hs, `result="cookie"`)
	}); err != nil {
		t.Fatalf("the edge sends no cookie replies under the flood: %v\n%s", err, flood)
	}
	t1 := time.Now()
	time.Sleep(duration - 2*time.Second)
	m2 := metrics()
	window := time.Since(t1)
	flood.Wait()
	loop.Stop()
	t.Log(flood)
	t.Log(loop)
	rss, peak, err := e.w.Edge.MemStatus()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("edge memory after the flood: RSS %s, peak %s", testnet.MiB(rss), testnet.MiB(peak))
	d := func(name string, labels ...string) float64 {
		return value(m2, name, labels...) - value(m1, name, labels...)
	}
	processed, cookies := d(hs, `result="processed"`), d(hs, `result="cookie"`)
	entered := d("onramp_edge_l3_handshake_under_load_entered_total")
	received := d("onramp_edge_l3_handshake_datagrams_received_total", `type="initiation"`)
	sent := d("onramp_edge_l3_handshake_messages_sent_total", `type="cookie_reply"`)
	t.Logf("before the edge went under load it processed %v of the flood's initiations; then in %v it received %v, processed %v within its budget, "+
		"answered %v with a cookie (%v cookie replies sent); under load: %v now, went under load %v times in the window",
		value(m1, hs, `result="processed"`)-value(m0, hs, `result="processed"`), window.Round(time.Millisecond),
		received, processed, cookies, sent, value(m2, "onramp_edge_l3_handshake_under_load"), entered)
	// Leaving "under load" once would let half the budget through (1000
	// messages); before the device held it, it processed its whole budget
	// (2000/s) of the flood.
	if processed > 1000 {
		t.Errorf("the edge processed %v of the flood's messages in %v, want at most half its budget (1000): it left under load", processed, window.Round(time.Millisecond))
	}
	if entered > 1 || value(m2, "onramp_edge_l3_handshake_under_load") != 1 {
		t.Errorf("the edge went under load %v times during the flood, and is under load %v at its end: want it held under load",
			entered, value(m2, "onramp_edge_l3_handshake_under_load"))
	}
	if cookies < float64(rate)*window.Seconds()/4 || sent != cookies || received < cookies {
		t.Errorf("%v cookies answered, %v cookie replies sent, %v initiations received in %v: the flood did not test the edge",
			cookies, sent, received, window.Round(time.Millisecond))
	}
	if r := loop.Rate(); r < 0.99 {
		t.Errorf("alice's success rate under the flood: %.1f%%, want at least 99%%", 100*r)
	}
	if peak > 200<<20 {
		t.Errorf("edge peak RSS %s, want under 200 MiB", testnet.MiB(peak))
	}
}
