package connector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/onramp-net/onramp/l3router/l3config"
	"github.com/onramp-net/onramp/l3router/wg"
)

// Connector is a running L3 connector: a kernel TUN, a WireGuard device
// (package wg) peered with the edge, and the host's addresses and routes
// through it.
type Connector struct {
	mu   sync.Mutex // guards info, cfg and peer, and serialises Reload
	info Info
	cfg  *l3config.Connector // the configuration running now
	tun  *tunDev
	dev  *wg.Device
	peer *wg.Peer        // the edge
	nl   *netlink.Handle // in the namespace Start ran in
	log  *slog.Logger
	// droppedBefore is what the edge peers replaced so far dropped
	// (PeerStats.Dropped), so that Stats.DroppedSource does not go back.
	droppedBefore uint64

	closeOnce sync.Once
	closeErr  error
}

// Start brings the connector up as cfg says (see the package doc) in the
// calling thread's network namespace, and returns once the device is
// configured; the handshake with the edge follows in the background (see
// [Connector.Stats]). An error names the step that failed; whatever was
// made is removed again.
func Start(ctx context.Context, cfg *l3config.Connector, log *slog.Logger) (*Connector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	plan := NewPlan(cfg)
	edges, err := resolveEndpoints(ctx, cfg.Edge)
	if err != nil {
		return nil, err
	}
	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open rtnetlink: %w%s", err, hint(err))
	}
	td, err := tun.CreateTUN(cfg.Interface, cfg.MTU)
	if err != nil {
		h := hint(err)
		if _, lerr := nl.LinkByName(cfg.Interface); lerr == nil && h == "" {
			h = fmt.Sprintf(": an interface named %s exists already (ip link show %s): another connector, or not a TUN", cfg.Interface, cfg.Interface)
		}
		nl.Close()
		return nil, fmt.Errorf("create TUN %s: %w%s", cfg.Interface, err, h)
	}
	c := &Connector{
		info: Info{Plan: plan, EdgeAddr: edges[0], EdgeAddrs: edges, Offloads: probeOffloads(td)},
		cfg:  cfg,
		tun:  newTunDev(td, plan),
		nl:   nl,
		log:  log,
	}
	// The device opens its UDP sockets here, in this thread's namespace
	// (TUN events never reach it: see tunDev).
	c.dev, err = wg.New(wg.Config{PrivateKey: cfg.PrivateKey, ListenPort: cfg.ListenPort, TUN: c.tun,
		MTU: cfg.MTU, Loops: 1, Logger: log})
	if err != nil {
		c.tun.Close()
		nl.Close()
		return nil, fmt.Errorf("open WireGuard UDP port %d: %w%s", cfg.ListenPort, err, hint(err))
	}
	ok := false
	defer func() {
		if !ok {
			_ = c.Close() // the interface, its addresses and routes go
		}
	}()
	if err := c.setPeer(cfg, edges, true); err != nil {
		return nil, fmt.Errorf("configure WireGuard: %w", err)
	}
	c.info.Port = c.dev.Port()
	if err := setupLink(nl, plan); err != nil {
		return nil, err
	}
	if c.info.ForwardingEnabled, err = enableForwarding(plan); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

// Info describes the connector.
func (c *Connector) Info() Info {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.info
}

// Stats returns the counters and the state of the session with the edge.
func (c *Connector) Stats() (Stats, error) {
	var s Stats
	c.tun.stats(&s)
	c.mu.Lock()
	paths := c.peer.Paths()
	s.DroppedSource = c.droppedBefore + c.peer.Stats().Dropped
	c.mu.Unlock()
	first := paths[0] // the first live edge's endpoint, else the first's
	for _, ps := range paths {
		s.Edges = append(s.Edges, EdgeStats{Endpoint: ps.Configured.String(), LastHandshake: ps.LastHandshake, Live: ps.Live,
			WireGuardTxBytes: ps.TxBytes, WireGuardRxBytes: ps.RxBytes})
		s.WireGuardTxBytes += ps.TxBytes
		s.WireGuardRxBytes += ps.RxBytes
		if ps.LastHandshake.After(s.LastHandshake) {
			s.LastHandshake = ps.LastHandshake
		}
		if ps.Live && !first.Live {
			first = ps
		}
	}
	if first.Endpoint.IsValid() {
		s.Endpoint = first.Endpoint.String()
	}
	return s, nil
}

// Ready reports whether the session with the edge can carry packets now
// (see [Stats.Ready]).
func (c *Connector) Ready() bool {
	s, err := c.Stats()
	return err == nil && s.Ready(time.Now())
}

// Close stops the device and removes the TUN; its addresses and routes go
// with it. Forwarding stays as it is: other services on the host (or a
// second connector) may rely on it. Close is safe to call more than once.
func (c *Connector) Close() error {
	c.closeOnce.Do(func() {
		c.dev.Close()
		// The kernel removes a TUN when its last file descriptor closes,
		// which Close does before it returns; check, so that a
		// leftover interface is reported rather than found later.
		c.mu.Lock()
		name := c.info.Interface
		c.mu.Unlock()
		if _, err := c.nl.LinkByName(name); err == nil {
			c.closeErr = fmt.Errorf("close: interface %s still exists after its TUN closed", name)
		}
		c.nl.Close()
	})
	return c.closeErr
}

// setPeer configures the edge peer as cfg says: a new one if fresh or the
// edge's key changed (a new session), else endpoints, keepalive and
// allowed IPs in place (a session with each edge). c.mu is held, or c not
// yet shared.
func (c *Connector) setPeer(cfg *l3config.Connector, edges []netip.AddrPort, fresh bool) error {
	if fresh || c.peer.PublicKey() != cfg.Edge.PublicKey {
		if c.peer != nil {
			c.dev.RemovePeer(c.peer.PublicKey())
			c.droppedBefore += c.peer.Stats().Dropped
		}
		p, err := c.dev.AddPeer("edge", cfg.Edge.PublicKey)
		if err != nil {
			return err
		}
		c.peer = p
	}
	c.peer.SetAllowedIPs(cfg.Routes)
	if err := c.peer.SetEndpoints(edges); err != nil {
		return err
	}
	c.peer.SetKeepalive(time.Duration(cfg.Edge.Keepalive))
	return nil
}

// resolveEndpoints resolves each of the edge's endpoints.
func resolveEndpoints(ctx context.Context, e l3config.EdgePeer) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for _, ep := range e.All() {
		a, err := resolveEndpoint(ctx, ep)
		if err != nil {
			return nil, err
		}
		if slices.Contains(out, a) {
			return nil, fmt.Errorf("edge endpoint %s is %s, as another endpoint: each endpoint is one edge", ep, a)
		}
		out = append(out, a)
	}
	return out, nil
}

// resolveEndpoint turns host:port into an address, resolving a name.
func resolveEndpoint(ctx context.Context, endpoint string) (netip.AddrPort, error) {
	host, portStr, err := net.SplitHostPort(endpoint)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("edge.endpoint %q: %w", endpoint, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return netip.AddrPort{}, fmt.Errorf("edge.endpoint %q: no valid port", endpoint)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return netip.AddrPortFrom(a.Unmap(), uint16(port)), nil
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("resolve edge.endpoint %s: %w", host, err)
	}
	if len(addrs) == 0 {
		return netip.AddrPort{}, fmt.Errorf("resolve edge.endpoint %s: no addresses", host)
	}
	return netip.AddrPortFrom(addrs[0].Unmap(), uint16(port)), nil
}

// setupLink adds the addresses, sets the TUN up and adds the routes.
func setupLink(nl *netlink.Handle, p Plan) error {
	link, err := nl.LinkByName(p.Interface)
	if err != nil {
		return fmt.Errorf("find interface %s: %w", p.Interface, err)
	}
	for _, a := range p.Addresses {
		addr := &netlink.Addr{IPNet: ipNet(a)}
		if a.Addr().Is6() {
			addr.Flags = unix.IFA_F_NODAD // a /128 of our own: nothing to detect
		}
		if err := nl.AddrAdd(link, addr); err != nil {
			return fmt.Errorf("add address %s to %s: %w%s", a, p.Interface, err, hint(err))
		}
	}
	// Reverse-path filtering, even strict, passes every packet from the
	// edge: the device accepts only sources in the peer's allowed IPs,
	// and those are exactly the routes through the TUN. Loosening it would
	// cost a route lookup per packet where it is off.
	if err := nl.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w%s", p.Interface, err, hint(err))
	}
	for _, r := range p.Routes {
		if err := nl.RouteAdd(netlinkRoute(link, r)); err != nil {
			h := hint(err)
			if errors.Is(err, unix.EEXIST) {
				h = fmt.Sprintf(": a route to %s exists already (see ip route show %s): remove it, or the prefix from routes", r.Dst, r.Dst)
			}
			return fmt.Errorf("add route %s dev %s%s: %w%s", r.Dst, p.Interface, r.srcString(), err, h)
		}
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// Forwarding sysctls; they are per network namespace.
const (
	forward4 = "/proc/sys/net/ipv4/ip_forward"
	forward6 = "/proc/sys/net/ipv6/conf/all/forwarding"
)

// enableForwarding turns on the forwarding the plan asks for and returns
// the sysctls it changed.
func enableForwarding(p Plan) ([]string, error) {
	var changed []string
	for _, f := range []struct {
		on   bool
		path string
	}{{p.Forward4, forward4}, {p.Forward6, forward6}} {
		if !f.on {
			continue
		}
		b, err := os.ReadFile(f.path)
		if err != nil {
			return changed, fmt.Errorf("enable forwarding: %w", err)
		}
		if strings.TrimSpace(string(b)) == "1" {
			continue
		}
		if err := os.WriteFile(f.path, []byte("1"), 0); err != nil {
			return changed, fmt.Errorf("enable forwarding: write %s: %w%s", f.path, err, hint(err))
		}
		changed = append(changed, f.path)
	}
	return changed, nil
}

// hint adds the likely cause of a system error a user can fix.
func hint(err error) string {
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES), errors.Is(err, unix.EROFS):
		return ": are you root? (needs CAP_NET_ADMIN)"
	}
	return ""
}
