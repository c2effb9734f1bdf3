package testnet

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
)

// Topology describes a small network: nodes (each its own network
// namespace) and point-to-point veth links between them. It is a plain Go
// value; [Build] and [New] bring it up.
type Topology struct {
	Name  string
	Nodes []NodeSpec
	Links []LinkSpec
}

// NodeSpec is one host or router.
type NodeSpec struct {
	Name string
	// Forward enables IPv4 and IPv6 forwarding (a router).
	Forward bool
	// Routes are installed after every link is up.
	Routes []Route
}

// LinkSpec is a veth pair between nodes A and B. Interface names default to
// "eth0", "eth1", ... in the order of the node's links.
type LinkSpec struct {
	A, B         string
	AIf, BIf     string         // optional interface names (at most 15 bytes)
	AAddr, BAddr []netip.Prefix // addresses with their prefix length
	MTU          int            // 0 keeps the kernel default (1500)
}

// Route is a route on a node. A zero Dst of either family means default.
type Route struct {
	Dst netip.Prefix
	Via netip.Addr
}

// Default4 and Default6 are the destinations of default routes.
var (
	Default4 = netip.MustParsePrefix("0.0.0.0/0")
	Default6 = netip.MustParsePrefix("::/0")
)

// The only address space a testnet may use: the benchmarking range of
// RFC 2544 and unique local IPv6 addresses. Nothing else is ever a target.
var (
	allowed4 = netip.MustParsePrefix("198.18.0.0/15")
	allowed6 = netip.MustParsePrefix("fd00::/8")
)

// Allowed reports whether a is an address a testnet may use.
func Allowed(a netip.Addr) bool {
	return allowed4.Contains(a) || allowed6.Contains(a)
}

var nodeName = regexp.MustCompile(`^[a-z][a-z0-9]{0,11}$`)

// Validate checks names, interface names and that every address lies in
// 198.18.0.0/15 or fd00::/8.
func (topo *Topology) Validate() error {
	seen := map[string]bool{}
	for _, n := range topo.Nodes {
		if !nodeName.MatchString(n.Name) {
			return fmt.Errorf("topology %s: node %q: name must match %s", topo.Name, n.Name, nodeName)
		}
		if seen[n.Name] {
			return fmt.Errorf("topology %s: node %q defined twice", topo.Name, n.Name)
		}
		seen[n.Name] = true
		for _, r := range n.Routes {
			if r.Dst.Bits() != 0 && !Allowed(r.Dst.Addr()) {
				return fmt.Errorf("topology %s: node %s: route to %s outside 198.18.0.0/15 and fd00::/8", topo.Name, n.Name, r.Dst)
			}
			if !Allowed(r.Via) {
				return fmt.Errorf("topology %s: node %s: gateway %s outside 198.18.0.0/15 and fd00::/8", topo.Name, n.Name, r.Via)
			}
		}
	}
	for i, l := range topo.Links {
		if !seen[l.A] || !seen[l.B] || l.A == l.B {
			return fmt.Errorf("topology %s: link %d: needs two distinct defined nodes, have %q and %q", topo.Name, i, l.A, l.B)
		}
		for _, name := range []string{l.AIf, l.BIf} {
			if len(name) > 15 {
				return fmt.Errorf("topology %s: link %d: interface name %q longer than 15 bytes", topo.Name, i, name)
			}
		}
		for _, p := range append(append([]netip.Prefix{}, l.AAddr...), l.BAddr...) {
			if !p.IsValid() || !Allowed(p.Addr()) {
				return fmt.Errorf("topology %s: link %d: address %s outside 198.18.0.0/15 and fd00::/8", topo.Name, i, p)
			}
		}
		if l.MTU != 0 && (l.MTU < 1280 || l.MTU > 65535) {
			return fmt.Errorf("topology %s: link %d: MTU %d outside 1280..65535", topo.Name, i, l.MTU)
		}
	}
	return nil
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

// ClientRouterServer is the basic three-node line used by most tests and
// benchmarks:
//
//	client eth0 198.18.1.2, fd00:1::2  <->  router eth0 198.18.1.1, fd00:1::1
//	router eth1 198.18.2.1, fd00:2::1  <->  server eth0 198.18.2.2, fd00:2::2
//
// client and server route everything through router, which forwards.
func ClientRouterServer() Topology {
	return Topology{
		Name: "crs",
		Nodes: []NodeSpec{
			{Name: "client", Routes: []Route{{Default4, addr("198.18.1.1")}, {Default6, addr("fd00:1::1")}}},
			{Name: "router", Forward: true},
			{Name: "server", Routes: []Route{{Default4, addr("198.18.2.1")}, {Default6, addr("fd00:2::1")}}},
		},
		Links: []LinkSpec{
			{A: "client", B: "router",
				AAddr: []netip.Prefix{pfx("198.18.1.2/24"), pfx("fd00:1::2/64")},
				BAddr: []netip.Prefix{pfx("198.18.1.1/24"), pfx("fd00:1::1/64")}},
			{A: "router", B: "server",
				AAddr: []netip.Prefix{pfx("198.18.2.1/24"), pfx("fd00:2::1/64")},
				BAddr: []netip.Prefix{pfx("198.18.2.2/24"), pfx("fd00:2::2/64")}},
		},
	}
}

// Topologies lists the named topologies the CLI can bring up.
func Topologies() map[string]func() Topology {
	return map[string]func() Topology{
		"crs":    ClientRouterServer,
		"tunnel": Tunnel,
		"l3":     L3,
		"multi":  MultiEdge,
	}
}

// Tunnel is the L4 tunnel's world: a user reaches the edge; a connector
// inside a private network dials the edge and reaches the origin. The user
// and the edge have no route into the private network, so any byte that
// arrives at the origin came through the tunnel.
//
//	user   eth0 198.18.10.2 fd00:10::2  <->  edge eth0 198.18.10.1 fd00:10::1
//	edge   eth1 198.18.20.1 fd00:20::1  <->  conn eth0 198.18.20.2 fd00:20::2
//	conn   eth1 198.18.30.1 fd00:30::1  <->  origin eth0 198.18.30.2 fd00:30::2
func Tunnel() Topology {
	return Topology{
		Name:  "tunnel",
		Nodes: []NodeSpec{{Name: "user"}, {Name: "edge"}, {Name: "conn"}, {Name: "origin"}},
		Links: []LinkSpec{
			{A: "user", B: "edge",
				AAddr: []netip.Prefix{pfx("198.18.10.2/24"), pfx("fd00:10::2/64")},
				BAddr: []netip.Prefix{pfx("198.18.10.1/24"), pfx("fd00:10::1/64")}},
			{A: "edge", B: "conn",
				AAddr: []netip.Prefix{pfx("198.18.20.1/24"), pfx("fd00:20::1/64")},
				BAddr: []netip.Prefix{pfx("198.18.20.2/24"), pfx("fd00:20::2/64")}},
			{A: "conn", B: "origin",
				AAddr: []netip.Prefix{pfx("198.18.30.1/24"), pfx("fd00:30::1/64")},
				BAddr: []netip.Prefix{pfx("198.18.30.2/24"), pfx("fd00:30::2/64")}},
		},
	}
}

// MultiEdge is the world of several edges sharing one etcd cluster: a user,
// two edges and two connector hosts meet at an Internet router ("inet");
// both connector hosts reach a private LAN ("lan", a router) with the
// origin behind it; the edges reach a three-member etcd cluster ("etcd1",
// "etcd2", "etcd3", one member per node) over a private backbone router
// ("core"). Each edge has one public address that the user and both
// connectors reach; the edges reach each other over both routers. Nothing
// outside the LAN routes into it, so any byte that arrives at the origin
// came through a tunnel; only the edges (and core) reach the etcd members.
// Taking one link down cuts off one node: an edge (edge-inet), a
// connector (conn-inet), an etcd member (etcd1-core).
//
//	user   eth0 198.18.50.2 fd00:50::2  <->  inet eth0 198.18.50.1 fd00:50::1
//	edge   eth0 198.18.51.2 fd00:51::2  <->  inet eth1 198.18.51.1 fd00:51::1
//	edge2  eth0 198.18.52.2 fd00:52::2  <->  inet eth2 198.18.52.1 fd00:52::1
//	conn   eth0 198.18.53.2 fd00:53::2  <->  inet eth3 198.18.53.1 fd00:53::1
//	conn2  eth0 198.18.54.2 fd00:54::2  <->  inet eth4 198.18.54.1 fd00:54::1
//	conn   eth1 198.18.60.1 fd00:60::1  <->  lan eth0 198.18.60.2 fd00:60::2
//	conn2  eth1 198.18.61.1 fd00:61::1  <->  lan eth1 198.18.61.2 fd00:61::2
//	lan    eth2 198.18.62.1 fd00:62::1  <->  origin eth0 198.18.62.2 fd00:62::2
//	edge   eth1 198.18.80.2 fd00:80::2  <->  core eth0 198.18.80.1 fd00:80::1
//	edge2  eth1 198.18.81.2 fd00:81::2  <->  core eth1 198.18.81.1 fd00:81::1
//	etcd1  eth0 198.18.85.2 fd00:85::2  <->  core eth2 198.18.85.1 fd00:85::1
//	etcd2  eth0 198.18.86.2 fd00:86::2  <->  core eth3 198.18.86.1 fd00:86::1
//	etcd3  eth0 198.18.87.2 fd00:87::2  <->  core eth4 198.18.87.1 fd00:87::1
//
// Routes: user, edges and connector hosts default through inet; the edges
// reach the backbone (198.18.80.0/20, fd00:80::/28) through core; the
// connector hosts reach the LAN (198.18.62.0/24, fd00:62::/64) through lan;
// origin and the etcd members default through their router.
func MultiEdge() Topology {
	via := func(a4, a6 string) []Route {
		return []Route{{Default4, addr(a4)}, {Default6, addr(a6)}}
	}
	link := func(a, b string, n int) LinkSpec {
		return LinkSpec{A: a, B: b,
			AAddr: []netip.Prefix{pfx(fmt.Sprintf("198.18.%d.2/24", n)), pfx(fmt.Sprintf("fd00:%d::2/64", n))},
			BAddr: []netip.Prefix{pfx(fmt.Sprintf("198.18.%d.1/24", n)), pfx(fmt.Sprintf("fd00:%d::1/64", n))}}
	}
	backbone := []Route{{pfx("198.18.80.0/20"), addr("198.18.80.1")}, {pfx("fd00:80::/28"), addr("fd00:80::1")}}
	return Topology{
		Name: "multi",
		Nodes: []NodeSpec{
			{Name: "user", Routes: via("198.18.50.1", "fd00:50::1")},
			{Name: "inet", Forward: true},
			{Name: "edge", Routes: append(via("198.18.51.1", "fd00:51::1"), backbone...)},
			{Name: "edge2", Routes: append(via("198.18.52.1", "fd00:52::1"),
				Route{pfx("198.18.80.0/20"), addr("198.18.81.1")}, Route{pfx("fd00:80::/28"), addr("fd00:81::1")})},
			{Name: "conn", Routes: append(via("198.18.53.1", "fd00:53::1"),
				Route{pfx("198.18.62.0/24"), addr("198.18.60.2")}, Route{pfx("fd00:62::/64"), addr("fd00:60::2")})},
			{Name: "conn2", Routes: append(via("198.18.54.1", "fd00:54::1"),
				Route{pfx("198.18.62.0/24"), addr("198.18.61.2")}, Route{pfx("fd00:62::/64"), addr("fd00:61::2")})},
			// No default route: the LAN reaches only its connector hosts.
			{Name: "lan", Forward: true},
			{Name: "origin", Routes: via("198.18.62.1", "fd00:62::1")},
			{Name: "core", Forward: true},
			{Name: "etcd1", Routes: via("198.18.85.1", "fd00:85::1")},
			{Name: "etcd2", Routes: via("198.18.86.1", "fd00:86::1")},
			{Name: "etcd3", Routes: via("198.18.87.1", "fd00:87::1")},
		},
		Links: []LinkSpec{
			link("user", "inet", 50),
			link("edge", "inet", 51),
			link("edge2", "inet", 52),
			link("conn", "inet", 53),
			link("conn2", "inet", 54),
			// The connector hosts are the LAN's gateways: .1 on their side.
			link("lan", "conn", 60),
			link("lan", "conn2", 61),
			link("origin", "lan", 62),
			link("edge", "core", 80),
			link("edge2", "core", 81),
			link("etcd1", "core", 85),
			link("etcd2", "core", 86),
			link("etcd3", "core", 87),
		},
	}
}

// MultiEdgeEtcd names the nodes of [MultiEdge] that run the etcd members.
var MultiEdgeEtcd = []string{"etcd1", "etcd2", "etcd3"}

// L3 is the L3 on-ramp's world: a WireGuard client and two sites, each a
// connector host in front of a LAN host, all reaching the edge's one public
// address (198.18.100.1, fd00:100::1 on the edge's loopback) through the
// edge's links. The edge forwards in the kernel only so that the
// benchmarks' point-to-point WireGuard peer (client straight to a
// connector host) crosses the same links; onramp's packets end in the
// edge's WireGuard hub. The LAN hosts route the virtual client pool
// (198.18.160.0/20, fd00:160::/48) and the other site through their
// connector host.
//
//	client eth0 198.18.110.2 fd00:110::2  <->  edge eth0 198.18.110.1 fd00:110::1
//	edge   eth1 198.18.120.1 fd00:120::1  <->  conn eth0 198.18.120.2 fd00:120::2
//	conn   eth1 198.18.130.1 fd00:130::1  <->  lan eth0 198.18.130.2 fd00:130::2
//	edge   eth2 198.18.121.1 fd00:121::1  <->  conn2 eth0 198.18.121.2 fd00:121::2
//	conn2  eth1 198.18.140.1 fd00:140::1  <->  lan2 eth0 198.18.140.2 fd00:140::2
func L3() Topology {
	viaEdge := func(a4, a6 string) []Route {
		return []Route{{Default4, addr(a4)}, {Default6, addr(a6)}}
	}
	return Topology{
		Name: "l3",
		Nodes: []NodeSpec{
			{Name: "client", Routes: viaEdge("198.18.110.1", "fd00:110::1")},
			// No routes into the sites: a packet reaches a LAN only
			// through WireGuard.
			{Name: "edge", Forward: true},
			{Name: "conn", Routes: viaEdge("198.18.120.1", "fd00:120::1")},
			{Name: "lan", Routes: []Route{
				{pfx("198.18.160.0/20"), addr("198.18.130.1")}, {pfx("fd00:160::/48"), addr("fd00:130::1")},
				{pfx("198.18.140.0/24"), addr("198.18.130.1")}, {pfx("fd00:140::/64"), addr("fd00:130::1")},
			}},
			{Name: "conn2", Routes: viaEdge("198.18.121.1", "fd00:121::1")},
			{Name: "lan2", Routes: []Route{
				{pfx("198.18.160.0/20"), addr("198.18.140.1")}, {pfx("fd00:160::/48"), addr("fd00:140::1")},
				{pfx("198.18.130.0/24"), addr("198.18.140.1")}, {pfx("fd00:130::/64"), addr("fd00:140::1")},
			}},
		},
		Links: []LinkSpec{
			{A: "client", B: "edge",
				AAddr: []netip.Prefix{pfx("198.18.110.2/24"), pfx("fd00:110::2/64")},
				BAddr: []netip.Prefix{pfx("198.18.110.1/24"), pfx("fd00:110::1/64")}},
			{A: "edge", B: "conn",
				AAddr: []netip.Prefix{pfx("198.18.120.1/24"), pfx("fd00:120::1/64")},
				BAddr: []netip.Prefix{pfx("198.18.120.2/24"), pfx("fd00:120::2/64")}},
			{A: "conn", B: "lan",
				AAddr: []netip.Prefix{pfx("198.18.130.1/24"), pfx("fd00:130::1/64")},
				BAddr: []netip.Prefix{pfx("198.18.130.2/24"), pfx("fd00:130::2/64")}},
			{A: "edge", B: "conn2",
				AAddr: []netip.Prefix{pfx("198.18.121.1/24"), pfx("fd00:121::1/64")},
				BAddr: []netip.Prefix{pfx("198.18.121.2/24"), pfx("fd00:121::2/64")}},
			{A: "conn2", B: "lan2",
				AAddr: []netip.Prefix{pfx("198.18.140.1/24"), pfx("fd00:140::1/64")},
				BAddr: []netip.Prefix{pfx("198.18.140.2/24"), pfx("fd00:140::2/64")}},
		},
	}
}

// L3 addresses: the edge's public address (on its loopback once
// [AddL3EdgeAddress] ran) and the virtual client pools the L3 topology's
// routes expect.
var (
	L3Edge4 = addr("198.18.100.1")
	L3Edge6 = addr("fd00:100::1")
	L3Pool4 = pfx("198.18.160.0/20")
	L3Pool6 = pfx("fd00:160::/48")
)

// AddL3EdgeAddress puts the edge's public addresses (L3Edge4, L3Edge6) on
// the loopback of n's "edge" node, which every other node routes through.
func AddL3EdgeAddress(ctx context.Context, n *Net) error {
	edge := n.Node("edge")
	if edge == nil {
		return fmt.Errorf("testnet %s has no edge node", n.Topology.Name)
	}
	for _, a := range []netip.Addr{L3Edge4, L3Edge6} {
		if err := edge.IP(ctx, "addr", "add", netip.PrefixFrom(a, a.BitLen()).String(), "dev", "lo"); err != nil {
			return err
		}
	}
	return nil
}
