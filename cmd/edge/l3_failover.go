package main

import (
	"net/netip"
	"slices"

	"github.com/onramp-net/onramp/cmd/edge/edgeconfig"
	"github.com/onramp-net/onramp/l3router/hub"
)

// failoverOf returns the hub's failover bounds of l3.failover.
func failoverOf(f edgeconfig.L3Failover) hub.FailoverConfig {
	stale, failback := f.Bounds()
	return hub.FailoverConfig{StaleAfter: stale, FailbackAfter: failback}
}

// sharedRoles returns, by connector name, the subnets it shares with
// other connectors where it is active and where it is a standby.
func sharedRoles(h *hub.Hub) (active, standby map[string][]netip.Prefix) {
	active, standby = map[string][]netip.Prefix{}, map[string][]netip.Prefix{}
	for _, s := range h.Shared() {
		for _, o := range s.Owners {
			if o == s.Active {
				active[o] = append(active[o], s.Prefix)
			} else {
				standby[o] = append(standby[o], s.Prefix)
			}
		}
	}
	return active, standby
}

// subnetRole returns how a connector's subnet shows in `edge l3 connector
// list`: with "(active)" or "(standby)" when other connectors advertise
// it too.
func subnetRole(p netip.Prefix, info *l3PeerInfo) string {
	switch {
	case slices.Contains(info.Active, p):
		return p.String() + "(active)"
	case slices.Contains(info.Standby, p):
		return p.String() + "(standby)"
	}
	return p.String()
}
