package diag

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/onramp-net/onramp/l3router/connector"
	"github.com/onramp-net/onramp/l3router/l3config"
)

// WireGuard's overhead on an IP packet from the TUN: the outer IP and UDP
// headers and 32 bytes of WireGuard (header, counter, tag).
func wgOverhead(edge netip.Addr) int { return ipUDPOverhead(edge) + 32 }

// L3 checks what an L3 connector needs on this host: the TUN device,
// IP forwarding, its interface when it runs (running: the connector
// answered on --metrics), and for each edge endpoint DNS and the route,
// whose MTU must carry the tunnel's packets.
func L3(ctx context.Context, h Host, r Resolver, cfg *l3config.Connector, running bool) []Result {
	out := []Result{TUN(h)}
	out = append(out, forwarding(h, cfg, running)...)
	out = append(out, iface(cfg.Interface, running))
	for _, ep := range cfg.Edge.All() {
		res, ips := DNS(ctx, r, "edge endpoint", ep)
		out = append(out, res)
		for _, ip := range ips {
			out = append(out, wgMTU(ip, cfg.MTU))
		}
	}
	return out
}

// TUN checks that /dev/net/tun is there and opens.
func TUN(h Host) Result {
	path := h.TunPath
	if path == "" {
		path = "/dev/net/tun"
	}
	res := Result{Check: "tun " + path}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	switch {
	case err == nil:
		f.Close()
		res.Detail = "present and opens: the connector can create its interface (with CAP_NET_ADMIN)."
	case errors.Is(err, os.ErrNotExist):
		res.Status, res.Detail = Fail, "missing: the kernel's TUN driver is not loaded, or this container has no /dev/net/tun."
		res.Fix = "modprobe tun (and add tun to /etc/modules-load.d/); in a container, pass the device in (docker run --device /dev/net/tun --cap-add NET_ADMIN)."
	default:
		res.Status, res.Detail = Fail, fmt.Sprintf("cannot open it: %v.", err)
		res.Fix = "run the connector as root or with CAP_NET_ADMIN (the onramp-connector@ unit grants it); in a container, allow the device (--device /dev/net/tun)."
	}
	return res
}

func forwarding(h Host, cfg *l3config.Connector, running bool) []Result {
	p := connector.NewPlan(cfg)
	var out []Result
	for _, f := range []struct {
		want bool
		name string
	}{{p.Forward4, "net.ipv4.ip_forward"}, {p.Forward6, "net.ipv6.conf.all.forwarding"}} {
		res := Result{Check: "forwarding " + f.name}
		v, err := h.Sysctl(f.name)
		on := v == "1"
		switch {
		case err != nil:
			res.Status, res.Detail = Warn, fmt.Sprintf("cannot read it: %v.", err)
		case on:
			res.Detail = "on: LAN hosts reach the clients through this host."
		case f.want && running:
			res.Status = Fail
			res.Detail = "off although the running connector turned it on: something turned it off since, and packets between the clients and the LAN are dropped."
			res.Fix = "sysctl -w " + f.name + "=1, and find what turns it off (a sysctl.d file, a network manager)."
		case f.want:
			res.Detail = "off: connector l3 run turns it on when it starts."
		case len(cfg.Subnets) > 0 || len(cfg.Routes) > 0:
			res.Status = Warn
			res.Detail = "off, and l3.yml says forwarding: false: LAN hosts cannot reach the clients through this host."
			res.Fix = "set forwarding: true in l3.yml, or sysctl -w " + f.name + "=1."
		default:
			res.Detail = "off; nothing is forwarded (no subnets)."
		}
		out = append(out, res)
	}
	return out
}

func iface(name string, running bool) Result {
	res := Result{Check: "interface " + name}
	_, err := net.InterfaceByName(name)
	switch {
	case err == nil && running:
		res.Detail = "present: the running connector's WireGuard interface."
	case err == nil:
		res.Status = Warn
		res.Detail = "present, but no connector answered on --metrics: another connector (or a left-over) holds the name, and connector l3 run would fail."
		res.Fix = "give --metrics ADDR of the running connector, or remove the stale interface (ip link del " + name + ")."
	case running:
		res.Status = Fail
		res.Detail = "missing although the connector runs: it was removed under it; nothing goes through the tunnel."
		res.Fix = "restart the connector (systemctl restart onramp-connector@NAME)."
	default:
		res.Detail = "not present: connector l3 run creates it when it starts."
	}
	return res
}

// wgMTU checks the route to an edge endpoint: its path MTU must carry the
// interface's MTU plus WireGuard's overhead, or large packets are lost.
func wgMTU(edge netip.Addr, mtu int) Result {
	res := Result{Check: "mtu edge endpoint " + edge.String()}
	rt, err := LookupRoute(edge)
	if err != nil {
		res.Status, res.Detail = Fail, fmt.Sprintf("no route: %v.", err)
		res.Fix = "check this host's routes (`ip route get " + edge.String() + "`)."
		return res
	}
	if mtu == 0 {
		mtu = l3config.DefaultMTU
	}
	need := mtu + wgOverhead(edge)
	via := fmt.Sprintf("via %s (source %s)", orDash(rt.Interface), rt.Source)
	if rt.MTU < need {
		res.Status = Warn
		res.Detail = fmt.Sprintf("path MTU %d %s is below the %d bytes a full-size tunnel packet takes (interface MTU %d + %d of WireGuard): large packets are fragmented or lost.",
			rt.MTU, via, need, mtu, wgOverhead(edge))
		res.Fix = fmt.Sprintf("set mtu: %d in l3.yml (and restart the connector).", max(rt.MTU-wgOverhead(edge), l3config.MinMTU))
		return res
	}
	res.Detail = fmt.Sprintf("path MTU %d %s carries the tunnel's packets (interface MTU %d + %d).", rt.MTU, via, mtu, wgOverhead(edge))
	return res
}
