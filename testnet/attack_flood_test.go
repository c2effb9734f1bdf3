package testnet

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/onramp-net/onramp/dataplane/prefilter"
)

// TestFloodPayloads holds the flood's kinds to the verdicts of the XDP
// pre-filter's stateless rules (prefilter.Classify) they are made for.
func TestFloodPayloads(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct {
		kind FloodKind
		port prefilter.Port
		want []prefilter.Reason
	}{
		{FloodRandom, prefilter.WireGuard, []prefilter.Reason{prefilter.WireGuardType, prefilter.WireGuardReserved, prefilter.WireGuardTruncated, prefilter.WireGuardLength}},
		{FloodTruncatedWG, prefilter.WireGuard, []prefilter.Reason{prefilter.WireGuardLength}},
		{FloodShortInitial, prefilter.QUIC, []prefilter.Reason{prefilter.QUICSmallInitial}},
		{FloodInitiation, prefilter.WireGuard, []prefilter.Reason{prefilter.PassWireGuard}},
		{FloodInitial, prefilter.QUIC, []prefilter.Reason{prefilter.PassQUIC}},
	} {
		for range 2000 {
			p := makeFloodPayload(c.kind, r)
			got := prefilter.Classify(p, c.port, 4)
			ok := false
			for _, w := range c.want {
				ok = ok || got == w
			}
			if !ok {
				t.Fatalf("%v (%d bytes, % x...): %v, want one of %v", c.kind, len(p), p[:min(8, len(p))], got, c.want)
			}
		}
	}
	// Random bytes at the QUIC port: mostly dropped for their shape.
	dropped := 0
	for range 2000 {
		if prefilter.Classify(makeFloodPayload(FloodRandom, r), prefilter.QUIC, 4).Drop() {
			dropped++
		}
	}
	t.Logf("random bytes at the QUIC port: %d of 2000 dropped for their shape", dropped)

	p := netip.MustParsePrefix("198.19.0.0/16")
	if a := randomAddr(p, r); !p.Contains(a) || a == p.Addr() {
		t.Errorf("randomAddr(%v) = %v", p, a)
	}
	if a := lastAddr(netip.MustParsePrefix("fd00:f100::/32")); a != netip.MustParseAddr("fd00:f100:ffff:ffff:ffff:ffff:ffff:ffff") {
		t.Errorf("lastAddr = %v", a)
	}
}
