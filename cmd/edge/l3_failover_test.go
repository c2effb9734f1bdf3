package main

import (
	"net/netip"
	"testing"
	"time"

	"github.com/onramp-net/onramp/cmd/edge/edgeconfig"
	"github.com/onramp-net/onramp/l3router/hub"
)

// TestFailoverDefaults: edge.yml's failover defaults are the hub's, and
// failback_after: 0s is never.
func TestFailoverDefaults(t *testing.T) {
	if got := failoverOf(edgeconfig.L3Failover{}); got.StaleAfter != hub.DefaultStaleAfter || got.FailbackAfter != hub.DefaultFailbackAfter {
		t.Errorf("defaults %+v, want the hub's %v, %v", got, hub.DefaultStaleAfter, hub.DefaultFailbackAfter)
	}
	if edgeconfig.MinL3StaleAfter != hub.MinStaleAfter {
		t.Errorf("edge config's minimum stale_after %v, the hub's %v", edgeconfig.MinL3StaleAfter, hub.MinStaleAfter)
	}
	zero := edgeconfig.Duration(0)
	if got := failoverOf(edgeconfig.L3Failover{FailbackAfter: &zero}); got.FailbackAfter >= 0 {
		t.Errorf("failback_after 0s: %v, want never (negative)", got.FailbackAfter)
	}
	five := edgeconfig.Duration(5 * time.Second)
	if got := failoverOf(edgeconfig.L3Failover{StaleAfter: &five}); got.StaleAfter != 5*time.Second {
		t.Errorf("stale_after 5s: %v", got.StaleAfter)
	}
}

func TestSubnetRole(t *testing.T) {
	a, b, c := netip.MustParsePrefix("198.18.30.0/24"), netip.MustParsePrefix("fd00:30::/64"), netip.MustParsePrefix("198.18.31.0/24")
	info := &l3PeerInfo{Subnets: []netip.Prefix{a, b, c}, Active: []netip.Prefix{a}, Standby: []netip.Prefix{b}}
	for p, want := range map[netip.Prefix]string{a: "198.18.30.0/24(active)", b: "fd00:30::/64(standby)", c: "198.18.31.0/24"} {
		if got := subnetRole(p, info); got != want {
			t.Errorf("subnetRole(%v) = %q, want %q", p, got, want)
		}
	}
}
