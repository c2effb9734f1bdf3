package testnet

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// L3 world with a client behind NAT and an edge with two public addresses:
// replies must leave the edge from the address the client wrote to, or the
// NAT drops them.

// The edge's second public address (on its loopback, beside L3Edge4 and
// L3Edge6, once [AddL3EdgeSecondAddress] ran).
var (
	L3EdgeSecond4 = addr("198.18.100.2")
	L3EdgeSecond6 = addr("fd00:100::2")
)

// L3NAT is the [L3] topology with its client turned into a NAT router: the
// WireGuard client is "home", behind it, and "client" masquerades what it
// forwards to the edge ([Node.Masquerade] on its eth0) as a home router
// does. The edge sees every packet of home's as coming from client's
// address, 198.18.110.2 or fd00:110::2.
//
//	home   eth0 198.18.111.2 fd00:111::2  <->  client eth1 198.18.111.1 fd00:111::1
//	client eth0 198.18.110.2 fd00:110::2  <->  edge eth0 198.18.110.1 fd00:110::1
//	(the rest as in L3)
func L3NAT() Topology {
	t := L3()
	t.Name = "l3nat"
	for i := range t.Nodes {
		if t.Nodes[i].Name == "client" {
			t.Nodes[i].Forward = true
		}
	}
	t.Nodes = append(t.Nodes, NodeSpec{Name: "home", Routes: []Route{{Default4, addr("198.18.111.1")}, {Default6, addr("fd00:111::1")}}})
	t.Links = append(t.Links, LinkSpec{A: "client", B: "home",
		AAddr: []netip.Prefix{pfx("198.18.111.1/24"), pfx("fd00:111::1/64")},
		BAddr: []netip.Prefix{pfx("198.18.111.2/24"), pfx("fd00:111::2/64")}})
	return t
}

// AddL3EdgeSecondAddress puts the edge's second public addresses
// (L3EdgeSecond4, L3EdgeSecond6) on the loopback of n's "edge" node.
func AddL3EdgeSecondAddress(ctx context.Context, n *Net) error {
	edge := n.Node("edge")
	if edge == nil {
		return fmt.Errorf("testnet %s has no edge node", n.Topology.Name)
	}
	for _, a := range []netip.Addr{L3EdgeSecond4, L3EdgeSecond6} {
		if err := edge.IP(ctx, "addr", "add", netip.PrefixFrom(a, a.BitLen()).String(), "dev", "lo"); err != nil {
			return err
		}
	}
	return nil
}

// Masquerade makes the node a NAT for IPv4 and IPv6 (nftables, in its own
// namespace): what it forwards out of oif leaves with oif's address, and
// only what answers a connection it saw go out comes back in. A UDP reply
// from another address than the one written to matches no connection: it
// is not translated back, and the node itself answers it with an ICMP port
// unreachable.
func (node *Node) Masquerade(ctx context.Context, oif string) error {
	rules := fmt.Sprintf(`table inet onramp_nat {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname %q masquerade
	}
}
`, oif)
	cmd := node.Command(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	out, err := cmd.CombinedOutput()
	node.net.logf("[%s] nft -f -\n%s%s", node.Name, rules, out)
	if err != nil {
		return fmt.Errorf("nft in %s: %w: %s", node.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// RestartEdge stops the world's edge and starts it again with the
// configuration yaml (written to the world's edge.yml; the data directory
// and so every client and connector are kept), returning once its admin
// socket answers.
func (w *L3World) RestartEdge(ctx context.Context, yaml string) error {
	w.Edge.Stop()
	if err := os.WriteFile(w.EdgeConfig, []byte(yaml), 0o644); err != nil {
		return err
	}
	return w.startEdge(ctx, filepath.Join(w.Dir, "edge-data"), l3EdgeStartupWait)
}
