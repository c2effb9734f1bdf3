package connector

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/onramp-net/onramp/l3router/l3config"
)

// Inspect looks at this host as `connector l3 run` would find it, changing
// nothing: whether the edge endpoint resolves, how each advertised subnet
// is reached, whether the interface exists already, and the forwarding
// sysctls. Notes that need the user's attention start with "warning: ".
func Inspect(ctx context.Context, cfg *l3config.Connector) []string {
	var notes []string
	for _, e := range cfg.Edge.All() {
		if ep, err := resolveEndpoint(ctx, e); err != nil {
			notes = append(notes, fmt.Sprintf("warning: %v", err))
		} else {
			notes = append(notes, fmt.Sprintf("edge endpoint %s is %s", e, ep))
		}
	}
	if _, err := netlink.LinkByName(cfg.Interface); err == nil {
		notes = append(notes, fmt.Sprintf("warning: interface %s exists already (another connector running?): run would fail", cfg.Interface))
	}
	for i, s := range cfg.Subnets {
		notes = append(notes, subnetNote(i, s.Addr().AsSlice(), s.String()))
	}
	p := NewPlan(cfg)
	for _, f := range []struct {
		want bool
		path string
		name string
	}{{p.Forward4, forward4, "IPv4"}, {p.Forward6, forward6, "IPv6"}} {
		b, err := os.ReadFile(f.path)
		on := err == nil && strings.TrimSpace(string(b)) == "1"
		switch {
		case err != nil:
			notes = append(notes, fmt.Sprintf("warning: %s forwarding: %v", f.name, err))
		case on:
			notes = append(notes, f.name+" forwarding is on")
		case f.want && f.name == "IPv6":
			notes = append(notes, "IPv6 forwarding is off: run turns it on; interfaces with accept_ra=1 then ignore router advertisements (set accept_ra=2 on those that use SLAAC)")
		case f.want:
			notes = append(notes, f.name+" forwarding is off: run turns it on")
		case cfg.Forwarding != nil && !*cfg.Forwarding && (len(cfg.Subnets) > 0 || len(cfg.Routes) > 0):
			notes = append(notes, fmt.Sprintf("warning: %s forwarding is off and forwarding is false: LAN hosts cannot reach clients through this host", f.name))
		}
	}
	return notes
}

// subnetNote tells how this host reaches an advertised subnet.
func subnetNote(i int, dst net.IP, subnet string) string {
	routes, err := netlink.RouteGet(dst)
	if err != nil || len(routes) == 0 {
		return fmt.Sprintf("warning: subnets[%d] %s: no route on this host (%v): packets for it cannot be delivered", i, subnet, err)
	}
	r := routes[0]
	dev := fmt.Sprint(r.LinkIndex)
	if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
		dev = l.Attrs().Name
	}
	via := "directly on " + dev
	if r.Gw != nil {
		via = fmt.Sprintf("via %s on %s", r.Gw, dev)
	}
	return fmt.Sprintf("subnets[%d] %s is reached %s (source %s)", i, subnet, via, r.Src)
}
