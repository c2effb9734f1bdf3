package connector

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/onramp-net/onramp/l3router/l3config"
)

// Reload applies a changed configuration to the running connector without
// dropping its session with the edge: routes through the TUN added and
// removed (with the edge peer's allowed IPs), the edge's endpoint,
// keepalive and key, the subnets it advertises (the destinations it
// forwards from the edge into the LAN), and forwarding for a
// family new routes bring in. This is what a site needs after the edge
// added or removed another connector (`edge l3 connector config NAME`
// prints the new l3.yml). A change that only a restart applies (private
// key, interface, MTU, listen port, addresses) is refused with the fields
// named, and so is a route the host already has; in both cases the
// connector keeps running exactly as before.
func (c *Connector) Reload(ctx context.Context, cfg *l3config.Connector) (Reloaded, error) {
	var res Reloaded
	if err := cfg.Validate(); err != nil {
		return res, fmt.Errorf("reload: config: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := restartOnly(c.cfg, cfg); len(d) > 0 {
		return res, errRestart(d)
	}
	edges := c.info.EdgeAddrs
	if !slices.Equal(cfg.Edge.All(), c.cfg.Edge.All()) {
		var err error
		if edges, err = resolveEndpoints(ctx, cfg.Edge); err != nil {
			return res, fmt.Errorf("reload: %w", err)
		}
	}
	old, plan := c.info.Plan, NewPlan(cfg)
	res.RoutesAdded, res.RoutesRemoved = diffPrefixes(c.cfg.Routes, cfg.Routes)
	res.SubnetsAdded, res.SubnetsRemoved = diffPrefixes(c.cfg.Subnets, cfg.Subnets)
	res.Edge = !cfg.Edge.Equal(c.cfg.Edge) || !slices.Equal(edges, c.info.EdgeAddrs)

	link, err := c.nl.LinkByName(plan.Interface)
	if err != nil {
		return res, fmt.Errorf("reload: find interface %s: %w", plan.Interface, err)
	}
	// Routes first, so that a refused one changes nothing: add the new
	// ones (undone if one fails), then the peer, then drop the old ones.
	var added []Route
	undo := func() {
		for _, r := range added {
			_ = c.nl.RouteDel(netlinkRoute(link, r))
		}
	}
	for _, r := range plan.Routes {
		if !slices.Contains(res.RoutesAdded, r.Dst) {
			continue
		}
		if err := c.nl.RouteAdd(netlinkRoute(link, r)); err != nil {
			undo()
			h := hint(err)
			if errors.Is(err, unix.EEXIST) {
				h = fmt.Sprintf(": a route to %s exists already (see ip route show %s): remove it, or the prefix from routes", r.Dst, r.Dst)
			}
			return Reloaded{}, fmt.Errorf("reload: add route %s dev %s%s: %w%s (nothing changed)", r.Dst, plan.Interface, r.srcString(), err, h)
		}
		added = append(added, r)
	}
	// The peer: a new edge key replaces the peer (a new session);
	// otherwise endpoint, keepalive and allowed IPs change in place.
	if err := c.setPeer(cfg, edges, false); err != nil {
		undo()
		_ = c.setPeer(c.cfg, c.info.EdgeAddrs, false)
		return Reloaded{}, fmt.Errorf("reload: configure WireGuard: %w (nothing changed)", err)
	}
	c.tun.setAccept(plan)
	for _, r := range old.Routes {
		if !slices.Contains(res.RoutesRemoved, r.Dst) {
			continue
		}
		if err := c.nl.RouteDel(netlinkRoute(link, r)); err != nil && !errors.Is(err, unix.ESRCH) {
			// The peer no longer sends there; the route only leads
			// into the TUN, where nothing answers.
			c.log.Warn("reload: remove route", "route", r.Dst, "err", err)
		}
	}
	if res.ForwardingEnabled, err = enableForwarding(plan); err != nil {
		// Routes and peer are in place; the LAN side waits for the sysctl.
		c.log.Warn("reload: "+err.Error(), "routes", joinPrefixes(plan.AllowedIPs))
	}
	c.info.Plan = plan
	c.info.EdgeAddr, c.info.EdgeAddrs = edges[0], edges
	c.info.ForwardingEnabled = append(c.info.ForwardingEnabled, res.ForwardingEnabled...)
	c.cfg = cfg
	return res, nil
}

// netlinkRoute is r through link, as setupLink adds it.
func netlinkRoute(link netlink.Link, r Route) *netlink.Route {
	rt := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(r.Dst)}
	if r.Dst.Addr().Is4() {
		rt.Scope = netlink.SCOPE_LINK
	}
	if r.Src.IsValid() {
		rt.Src = r.Src.AsSlice()
	}
	return rt
}
