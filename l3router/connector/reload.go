package connector

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/onramp-net/onramp/l3router/l3config"
)

// Reloaded says what [Connector.Reload] changed.
type Reloaded struct {
	// RoutesAdded and RoutesRemoved are the routes through the TUN (and
	// the edge peer's allowed IPs) that came and went.
	RoutesAdded, RoutesRemoved []netip.Prefix
	// SubnetsAdded and SubnetsRemoved are the subnets that came and went:
	// packets from the edge to them are forwarded into the LAN, or no
	// longer.
	SubnetsAdded, SubnetsRemoved []netip.Prefix
	// Edge is set when the edge peer's key, endpoint or keepalive changed.
	Edge bool
	// ForwardingEnabled lists the forwarding sysctls turned on for
	// families the new routes or subnets brought in.
	ForwardingEnabled []string
}

// Changed reports whether the reload changed anything.
func (r Reloaded) Changed() bool {
	return len(r.RoutesAdded)+len(r.RoutesRemoved)+len(r.SubnetsAdded)+len(r.SubnetsRemoved)+len(r.ForwardingEnabled) > 0 || r.Edge
}

// String is a one-line summary for a log.
func (r Reloaded) String() string {
	if !r.Changed() {
		return "nothing changed"
	}
	var s []string
	if len(r.RoutesAdded) > 0 {
		s = append(s, "routes added "+joinPrefixes(r.RoutesAdded))
	}
	if len(r.RoutesRemoved) > 0 {
		s = append(s, "routes removed "+joinPrefixes(r.RoutesRemoved))
	}
	if len(r.SubnetsAdded) > 0 {
		s = append(s, "subnets added "+joinPrefixes(r.SubnetsAdded))
	}
	if len(r.SubnetsRemoved) > 0 {
		s = append(s, "subnets removed "+joinPrefixes(r.SubnetsRemoved))
	}
	if r.Edge {
		s = append(s, "edge peer updated")
	}
	if len(r.ForwardingEnabled) > 0 {
		s = append(s, "forwarding enabled "+strings.Join(r.ForwardingEnabled, ","))
	}
	return strings.Join(s, "; ")
}

// restartOnly lists the fields of cfg that differ from run and that only a
// restart applies: the TUN's name, MTU and addresses, the private key and
// the UDP port.
func restartOnly(run, cfg *l3config.Connector) []string {
	var d []string
	if cfg.PrivateKey != run.PrivateKey {
		d = append(d, "privateKey")
	}
	if cfg.Interface != run.Interface {
		d = append(d, "interface")
	}
	if cfg.MTU != run.MTU {
		d = append(d, "mtu")
	}
	if cfg.ListenPort != run.ListenPort {
		d = append(d, "listenPort")
	}
	if added, removed := diffPrefixes(run.Addresses, cfg.Addresses); len(added)+len(removed) > 0 {
		d = append(d, "addresses")
	}
	return d
}

// diffPrefixes returns the prefixes of b not in a (added) and of a not in
// b (removed), each in the order of its list.
func diffPrefixes(a, b []netip.Prefix) (added, removed []netip.Prefix) {
	for _, p := range b {
		if !slices.Contains(a, p) {
			added = append(added, p)
		}
	}
	for _, p := range a {
		if !slices.Contains(b, p) {
			removed = append(removed, p)
		}
	}
	return added, removed
}

// errRestart is the error of a reload that asks for a restart.
func errRestart(fields []string) error {
	return fmt.Errorf("reload: %s changed: restart the connector to apply (it keeps running with the previous configuration)",
		strings.Join(fields, ", "))
}
