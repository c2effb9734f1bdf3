package testnet

import (
	"context"
	"net/netip"
)

// L3 subnet failover's world: two connector hosts on one LAN, both
// advertising it.

// L3 failover addresses: the shared LAN, its host, and the two connector
// hosts' addresses on it.
var (
	L3FailoverLAN   = pfx("198.18.150.0/24")
	L3FailoverHost  = addr("198.18.150.2")
	L3FailoverConnA = addr("198.18.150.1")
	L3FailoverConnB = addr("198.18.150.3")
)

// L3Failover is the L3 world of subnet failover: a WireGuard client, the
// edge, and two connector hosts, each with its own uplink to the edge and a
// leg into one LAN (198.18.150.0/24), which [SetupFailoverLAN] makes a
// bridge in the "lan" node with the LAN host's address on it. Both
// connectors advertise the LAN.
//
//	client eth0 198.18.110.2  <->  edge eth0 198.18.110.1
//	edge   eth1 198.18.120.1  <->  conn eth0 198.18.120.2    (site-a's uplink)
//	edge   eth2 198.18.121.1  <->  conn2 eth0 198.18.121.2   (site-b's uplink)
//	conn   eth1 198.18.150.1  <->  lan eth0 (bridge br0: 198.18.150.2)
//	conn2  eth1 198.18.150.3  <->  lan eth1 (bridge br0)
//
// The edge's public address is 198.18.100.1 ([AddL3EdgeAddress]), the
// client pool 198.18.160.0/20 (L3Pool4). IPv4 only: the router's failover
// does not depend on the family, and its unit tests cover both.
func L3Failover() Topology {
	viaEdge := func(a4 string) []Route { return []Route{{Default4, addr(a4)}} }
	return Topology{
		Name: "l3fo",
		Nodes: []NodeSpec{
			{Name: "client", Routes: viaEdge("198.18.110.1")},
			{Name: "edge", Forward: true},
			{Name: "conn", Routes: viaEdge("198.18.120.1")},
			{Name: "conn2", Routes: viaEdge("198.18.121.1")},
			{Name: "lan"},
		},
		Links: []LinkSpec{
			{A: "client", B: "edge", AAddr: []netip.Prefix{pfx("198.18.110.2/24")}, BAddr: []netip.Prefix{pfx("198.18.110.1/24")}},
			{A: "edge", B: "conn", AAddr: []netip.Prefix{pfx("198.18.120.1/24")}, BAddr: []netip.Prefix{pfx("198.18.120.2/24")}},
			{A: "edge", B: "conn2", AAddr: []netip.Prefix{pfx("198.18.121.1/24")}, BAddr: []netip.Prefix{pfx("198.18.121.2/24")}},
			{A: "conn", B: "lan", AAddr: []netip.Prefix{netip.PrefixFrom(L3FailoverConnA, 24)}},
			{A: "conn2", B: "lan", AAddr: []netip.Prefix{netip.PrefixFrom(L3FailoverConnB, 24)}},
		},
	}
}

// SetupFailoverLAN makes the "lan" node of an [L3Failover] net one LAN:
// a bridge br0 over its two legs, with the LAN host's address on it, and
// the LAN's route to the client pool through gw (a connector host's
// address on the LAN).
func SetupFailoverLAN(ctx context.Context, n *Net, gw netip.Addr) error {
	lan := n.Node("lan")
	for _, args := range [][]string{
		{"link", "add", "br0", "type", "bridge"},
		{"link", "set", "eth0", "master", "br0"},
		{"link", "set", "eth1", "master", "br0"},
		{"addr", "add", netip.PrefixFrom(L3FailoverHost, 24).String(), "dev", "br0"},
		{"link", "set", "br0", "up"},
		{"route", "add", L3Pool4.String(), "via", gw.String()},
	} {
		if err := lan.IP(ctx, args...); err != nil {
			return err
		}
	}
	return nil
}
