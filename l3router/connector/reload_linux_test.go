package connector

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l3router/l3config"
	"github.com/onramp-net/onramp/testnet"
)

// changed returns a copy of cfg (through its YAML, as a reload reads it)
// with f applied.
func changed(t *testing.T, cfg *l3config.Connector, f func(c *l3config.Connector)) *l3config.Connector {
	t.Helper()
	data, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	c, err := l3config.ParseConnector(data)
	if err != nil {
		t.Fatal(err)
	}
	f(c)
	return c
}

// TestReload changes a running connector's routes and edge peer as a
// SIGHUP with a re-printed l3.yml does, and checks with ip(8) and the
// device's own state that the change is made, and that a refused change
// leaves everything as it was.
func TestReload(t *testing.T) {
	n := testnet.New(t, twoNodes())
	node := n.Node("conn")
	cfg := testConfig(t)
	c := startIn(t, node, cfg)
	reload := func(cfg *l3config.Connector) (Reloaded, error) {
		var res Reloaded
		err := node.Do(func() (err error) {
			res, err = c.Reload(context.Background(), cfg)
			return err
		})
		return res, err
	}
	routes := func() string {
		return run(t, node, "ip", "-4", "route", "show", "dev", "onr0") + run(t, node, "ip", "-6", "route", "show", "dev", "onr0")
	}
	// The edge peer's state in the device, written as UAPI lines.
	ipc := func() string {
		c.mu.Lock()
		p := c.peer
		c.mu.Unlock()
		var b strings.Builder
		fmt.Fprintf(&b, "public_key=%s\nendpoint=%s\npersistent_keepalive_interval=%d\n",
			p.PublicKey().Hex(), p.Stats().Endpoint, int(p.Keepalive().Seconds()))
		for _, a := range p.AllowedIPs() {
			fmt.Fprintf(&b, "allowed_ip=%s\n", a)
		}
		return b.String()
	}

	// Another site appears at the edge: its subnets come in. This site
	// advertises one more subnet: packets from the edge to it are now
	// forwarded.
	toNewSubnet := ipPacket(netip.MustParseAddr("198.18.96.10"), netip.MustParseAddr("198.18.31.2"), 60)[16:]
	if c.tun.accept.Load().accepts(toNewSubnet) {
		t.Fatal("a packet to a subnet not advertised yet is accepted from the edge")
	}
	site2 := changed(t, cfg, func(c *l3config.Connector) {
		c.Routes = append(c.Routes, pfx("198.18.140.0/24"), pfx("fd00:140::/64"))
		c.Subnets = append(c.Subnets, pfx("198.18.31.0/24"))
	})
	res, err := reload(site2)
	if err != nil {
		t.Fatal(err)
	}
	if got := joinPrefixes(res.RoutesAdded); got != "198.18.140.0/24, fd00:140::/64" || len(res.RoutesRemoved) != 0 || res.Edge ||
		joinPrefixes(res.SubnetsAdded) != "198.18.31.0/24" {
		t.Errorf("reload result %+v", res)
	}
	if !c.tun.accept.Load().accepts(toNewSubnet) {
		t.Error("after the reload a packet to the new subnet is still refused")
	}
	r := routes()
	for _, want := range []string{"198.18.140.0/24 scope link src 198.18.96.2", "fd00:140::/64 src fd00:96::2", "198.18.96.0/20 scope link", "fd00:96::/48"} {
		if !strings.Contains(r, want) {
			t.Errorf("routes lack %q:\n%s", want, r)
		}
	}
	for _, want := range []string{"allowed_ip=198.18.140.0/24", "allowed_ip=fd00:140::/64", "allowed_ip=198.18.96.0/20"} {
		if !strings.Contains(ipc(), want) {
			t.Errorf("peer lacks %s:\n%s", want, ipc())
		}
	}

	// The site goes again, and the edge moves: routes leave, the peer
	// follows.
	moved := changed(t, site2, func(c *l3config.Connector) {
		c.Routes = c.Routes[:2]
		c.Edge.Endpoint = "198.18.20.9:51821"
		c.Edge.Keepalive = l3config.Duration(10 * time.Second)
	})
	if res, err = reload(moved); err != nil {
		t.Fatal(err)
	}
	if got := joinPrefixes(res.RoutesRemoved); got != "198.18.140.0/24, fd00:140::/64" || len(res.RoutesAdded) != 0 || !res.Edge {
		t.Errorf("reload result %+v", res)
	}
	if r := routes(); strings.Contains(r, "198.18.140.0") || strings.Contains(r, "fd00:140::") || !strings.Contains(r, "198.18.96.0/20") {
		t.Errorf("routes after removal:\n%s", r)
	}
	s := ipc()
	for _, want := range []string{"endpoint=198.18.20.9:51821", "persistent_keepalive_interval=10", "allowed_ip=198.18.96.0/20", "allowed_ip=fd00:96::/48"} {
		if !strings.Contains(s, want) {
			t.Errorf("peer lacks %s:\n%s", want, s)
		}
	}
	if strings.Contains(s, "198.18.140.0") {
		t.Errorf("peer keeps the removed site:\n%s", s)
	}
	if got := c.Info().EdgeAddr; got != netip.MustParseAddrPort("198.18.20.9:51821") {
		t.Errorf("Info().EdgeAddr = %v", got)
	}

	// A second edge of the same key: a session with each, in the order
	// of the file; and back to one.
	two := changed(t, moved, func(c *l3config.Connector) {
		c.Edge.Endpoint, c.Edge.Endpoints = "", []string{"198.18.20.9:51821", "198.18.20.10:51820"}
	})
	if res, err = reload(two); err != nil || !res.Edge {
		t.Fatalf("reload with two edges: %+v, %v", res, err)
	}
	st, _ := c.Stats()
	if got := c.Info().EdgeAddrs; len(got) != 2 || got[1] != netip.MustParseAddrPort("198.18.20.10:51820") || len(st.Edges) != 2 ||
		st.Edges[0].Endpoint != "198.18.20.9:51821" || st.Edges[1].Endpoint != "198.18.20.10:51820" {
		t.Errorf("two edges: Info().EdgeAddrs %v, Stats().Edges %+v", got, st.Edges)
	}
	if res, err = reload(moved); err != nil || !res.Edge {
		t.Fatalf("reload back to one edge: %+v, %v", res, err)
	}
	if st, _ := c.Stats(); len(st.Edges) != 1 || len(c.Info().EdgeAddrs) != 1 {
		t.Errorf("back to one edge: %+v", st.Edges)
	}

	// A route the host has already: refused, and the route added before
	// it in the same reload is taken back.
	run(t, node, "ip", "route", "add", "198.18.150.0/24", "via", "198.18.30.2")
	clash := changed(t, moved, func(c *l3config.Connector) {
		c.Routes = append(c.Routes, pfx("198.18.151.0/24"), pfx("198.18.150.0/24"))
	})
	beforeRoutes, beforePeer := routes(), ipc()
	if _, err := reload(clash); err == nil || !strings.Contains(err.Error(), "exists already") || !strings.Contains(err.Error(), "nothing changed") {
		t.Errorf("reload with a clashing route: %v", err)
	}
	if r, p := routes(), ipc(); r != beforeRoutes || p != beforePeer {
		t.Errorf("a refused reload changed things:\nroutes %s\nwas %s\npeer has 198.18.151: %v", r, beforeRoutes, strings.Contains(p, "198.18.151"))
	}

	// What only a restart can change.
	restart := changed(t, moved, func(c *l3config.Connector) {
		c.MTU = 1380
		c.Addresses = c.Addresses[:1]
	})
	if _, err := reload(restart); err == nil || !strings.Contains(err.Error(), "mtu, addresses changed: restart") {
		t.Errorf("reload with a new MTU and addresses: %v", err)
	}
	if l := run(t, node, "ip", "link", "show", "onr0"); !strings.Contains(l, "mtu 1420") {
		t.Errorf("link after a refused reload:\n%s", l)
	}
	if res, err := reload(moved); err != nil || res.Changed() {
		t.Errorf("reloading the running configuration: %+v, %v", res, err)
	}
}
