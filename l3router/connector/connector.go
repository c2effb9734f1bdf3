// Package connector is the connector half of the L3 on-ramp: it joins a
// private network to the edge's WireGuard hub.
//
// [Start] creates a kernel TUN device with virtio-net offloads (the kernel
// hands TCP and UDP super-segments to the connector, which writes coalesced
// ones back: GSO and GRO in batches), the WireGuard device of package wg in
// TUN mode with the edge as its only peer (UDP GSO and GRO on its socket),
// the connector's virtual addresses on the TUN, routes for the edge's
// client pools and other sites through it, and IP forwarding, so that
// hosts of the LAN reach the clients through this host and the clients'
// packets reach the LAN with their virtual source address.
// [Connector.Close] removes the TUN, and its addresses and routes with it.
//
// Per packet, the device decrypts what the edge sends straight into the
// TUN's write batch and encrypts what the TUN reads in place (see package
// wg); the connector counts packets at the TUN, per batch (see [Stats]).
// Of the packets from the edge, only those to the connector's subnets and
// its own addresses reach the TUN: the host would route any other
// destination wherever it reaches (see accept.go).
//
// The device's state is the connector's, not the interface's: the TUN's
// up and down events are not passed to the device, so the UDP socket is
// opened once, by Start, in the network namespace Start runs in, and an
// administrator setting the interface down does not rebind it (it shows in
// [Stats].LinkUp and [Stats.Ready]).
package connector

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/onramp-net/onramp/l3router/l3config"
)

// ReadyWindow is how recent the last handshake with the edge must be for
// the connector to be ready: WireGuard rejects a session older than this
// (Reject-After-Time), and with a persistent keepalive a live session is
// renewed every two minutes.
const ReadyWindow = 3 * time.Minute

// Plan is what [Start] does for a configuration, derived without touching
// the host. `connector l3 check` prints it.
type Plan struct {
	Interface string
	MTU       int
	// Addresses go on the TUN.
	Addresses []netip.Prefix
	// Routes go through the TUN, each with the preferred source address of
	// its family from Addresses (invalid if there is none).
	Routes []Route
	// AllowedIPs are the edge peer's allowed IPs: packets from the edge
	// whose source is outside them are dropped, and packets to them go to
	// the edge. They are the routes.
	AllowedIPs []netip.Prefix
	// Forward4 and Forward6 tell which forwarding sysctls Start turns on:
	// those of the families that the routes or subnets use, if the
	// configuration's forwarding is true.
	Forward4, Forward6 bool
	Edge               l3config.EdgePeer
	ListenPort         int
	Subnets            []netip.Prefix
}

// Route is a route through the TUN.
type Route struct {
	Dst netip.Prefix
	Src netip.Addr
}

// String formats r as ip(8) would, without the device.
func (r Route) String() string { return r.Dst.String() + r.srcString() }

func (r Route) srcString() string {
	if r.Src.IsValid() {
		return " src " + r.Src.String()
	}
	return ""
}

// NewPlan derives the plan of a validated configuration.
func NewPlan(cfg *l3config.Connector) Plan {
	p := Plan{
		Interface:  cfg.Interface,
		MTU:        cfg.MTU,
		Addresses:  slices.Clone(cfg.Addresses),
		AllowedIPs: slices.Clone(cfg.Routes),
		Edge:       cfg.Edge,
		ListenPort: cfg.ListenPort,
		Subnets:    slices.Clone(cfg.Subnets),
	}
	var src4, src6 netip.Addr
	for _, a := range cfg.Addresses {
		if a.Addr().Is4() && !src4.IsValid() {
			src4 = a.Addr()
		}
		if a.Addr().Is6() && !src6.IsValid() {
			src6 = a.Addr()
		}
	}
	for _, r := range cfg.Routes {
		src := src6
		if r.Addr().Is4() {
			src = src4
		}
		p.Routes = append(p.Routes, Route{Dst: r, Src: src})
	}
	if cfg.Forwarding == nil || *cfg.Forwarding {
		for _, q := range append(slices.Clone(cfg.Routes), cfg.Subnets...) {
			if q.Addr().Is4() {
				p.Forward4 = true
			} else {
				p.Forward6 = true
			}
		}
	}
	return p
}

// Steps describes the plan, one action a line.
func (p Plan) Steps() []string {
	var s []string
	s = append(s, fmt.Sprintf("create TUN %s, MTU %d, with virtio-net offloads (TSO/USO segments in, GRO-coalesced out)", p.Interface, p.MTU))
	if len(p.Addresses) > 0 {
		s = append(s, fmt.Sprintf("add addresses %s to %s and set it up", joinPrefixes(p.Addresses), p.Interface))
	} else {
		s = append(s, fmt.Sprintf("set %s up (no addresses: this host's own packets to clients have no virtual source)", p.Interface))
	}
	for _, r := range p.Routes {
		s = append(s, "route "+r.Dst.String()+" dev "+p.Interface+r.srcString())
	}
	port := "a random UDP port"
	if p.ListenPort != 0 {
		port = "UDP port " + strconv.Itoa(p.ListenPort)
	}
	if eps := p.Edge.All(); len(eps) > 1 {
		s = append(s, fmt.Sprintf("peer with the %d edges of key %s at %s from %s, a session with each, keepalive %s; "+
			"replies to a client through the edge its packets came through",
			len(eps), p.Edge.PublicKey, strings.Join(eps, ", "), port, time.Duration(p.Edge.Keepalive)))
	} else {
		s = append(s, fmt.Sprintf("peer with the edge %s at %s from %s, keepalive %s",
			p.Edge.PublicKey, strings.Join(eps, ""), port, time.Duration(p.Edge.Keepalive)))
	}
	if len(p.AllowedIPs) > 0 {
		s = append(s, "accept packets from the edge whose source is in "+joinPrefixes(p.AllowedIPs))
	} else {
		s = append(s, "accept no packets from the edge (routes is empty: WireGuard drops packets whose source is not in the peer's allowed IPs)")
	}
	if dst := append(slices.Clone(p.Subnets), p.Addresses...); len(dst) > 0 {
		s = append(s, "forward from the edge only packets to "+joinPrefixes(dst)+" (the subnets and this host's addresses); drop and count the rest")
	} else {
		s = append(s, "forward no packets from the edge (no subnets or addresses): drop and count them")
	}
	for _, f := range []struct {
		on   bool
		name string
	}{{p.Forward4, "IPv4 forwarding (net.ipv4.ip_forward)"}, {p.Forward6, "IPv6 forwarding (net.ipv6.conf.all.forwarding)"}} {
		if f.on {
			s = append(s, "enable "+f.name)
		}
	}
	return s
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// Stats are the connector's counters and the state of its session with
// the edge.
type Stats struct {
	// ToEdge counts IP packets read from the TUN (from the LAN or this host,
	// to be encrypted and sent to the edge); FromEdge those decrypted from
	// the edge and written to the TUN. Bytes are IP packet sizes.
	ToEdgePackets, ToEdgeBytes     uint64
	FromEdgePackets, FromEdgeBytes uint64
	// TUNWriteErrors counts batches the kernel refused in part or whole.
	TUNWriteErrors uint64
	// DroppedDestination counts packets from the edge dropped because
	// their destination is neither in the subnets nor one of the
	// connector's addresses: they are not the LAN's, and the host would
	// route them anywhere it reaches.
	DroppedDestination uint64
	// DroppedSource counts packets from the edge the WireGuard device
	// dropped: a source outside the routes, or not an IP packet.
	DroppedSource uint64
	// WireGuardTxBytes and WireGuardRxBytes are the UDP payload bytes sent
	// to and received from the edge, WireGuard's overhead included.
	WireGuardTxBytes, WireGuardRxBytes uint64
	// LastHandshake is when the last handshake with the edge completed;
	// zero if none has. With several edges: with any of them.
	LastHandshake time.Time
	// Endpoint is the edge's address as the device has it now. With
	// several edges: the first live one's (see Edges).
	Endpoint string
	// LinkUp reports whether the TUN interface is up and running.
	LinkUp bool
	// Edges are the sessions with each edge, in the order of l3.yml's
	// endpoints; one with one edge.
	Edges []EdgeStats
}

// EdgeStats is the connector's session with one edge.
type EdgeStats struct {
	// Endpoint is the edge's endpoint as resolved from l3.yml.
	Endpoint string
	// LastHandshake is when the last handshake with this edge completed.
	LastHandshake time.Time
	// Live: the session can carry packets, and with several edges the
	// edge was heard from lately (the connector sends new traffic to the
	// first live edge).
	Live bool
	// WireGuardTxBytes and WireGuardRxBytes are the bytes to and from this
	// edge.
	WireGuardTxBytes, WireGuardRxBytes uint64
}

// Ready reports whether the session with the edge can carry packets at
// now: the last handshake is less than [ReadyWindow] old and the TUN is up.
func (s Stats) Ready(now time.Time) bool {
	return s.LinkUp && !s.LastHandshake.IsZero() && now.Sub(s.LastHandshake) < ReadyWindow
}

// tunDev wraps the kernel TUN for the device: it writes only the packets
// whose destination the connector accepts (see acceptSet), counts the
// packets of each batch, and keeps the interface's up and down events from
// the device (see the package doc), recording them instead.
type tunDev struct {
	tun.Device
	events chan tun.Event
	up     atomic.Bool
	accept atomic.Pointer[acceptSet]

	toEdgePackets, toEdgeBytes     atomic.Uint64
	fromEdgePackets, fromEdgeBytes atomic.Uint64
	writeErrors                    atomic.Uint64
	droppedDst                     atomic.Uint64
}

// newTunDev wraps d, accepting from the edge packets to the subnets and
// addresses of p.
func newTunDev(d tun.Device, p Plan) *tunDev {
	t := &tunDev{Device: d, events: make(chan tun.Event, 8)}
	t.setAccept(p)
	go t.forwardEvents()
	return t
}

// setAccept makes the destinations accepted from the edge p's subnets and
// addresses.
func (t *tunDev) setAccept(p Plan) { t.accept.Store(newAcceptSet(p.Subnets, p.Addresses)) }

// forwardEvents passes MTU updates on and records up and down. It ends
// when the TUN closes its event channel, and closes the device's.
func (t *tunDev) forwardEvents() {
	defer close(t.events)
	for e := range t.Device.Events() {
		if e&tun.EventUp != 0 {
			t.up.Store(true)
		}
		if e&tun.EventDown != 0 {
			t.up.Store(false)
		}
		if e&tun.EventMTUUpdate != 0 {
			t.events <- tun.EventMTUUpdate
		}
	}
}

// Events implements tun.Device.
func (t *tunDev) Events() <-chan tun.Event { return t.events }

// Read implements tun.Device: packets on their way to the edge.
func (t *tunDev) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := t.Device.Read(bufs, sizes, offset)
	if n > 0 {
		var b int
		for _, s := range sizes[:n] {
			b += s
		}
		t.toEdgePackets.Add(uint64(n))
		t.toEdgeBytes.Add(uint64(b))
	}
	return n, err
}

// Write implements tun.Device: packets from the edge. Those whose
// destination is not accepted are dropped (bufs is compacted in place) and
// counted in droppedDst; every packet handed to the kernel is counted; a
// batch with an error is counted once more in writeErrors.
func (t *tunDev) Write(bufs [][]byte, offset int) (int, error) {
	a := t.accept.Load()
	keep := bufs[:0]
	var b int
	for _, p := range bufs {
		if !a.accepts(p[offset:]) {
			continue
		}
		keep = append(keep, p)
		b += len(p) - offset
	}
	if d := len(bufs) - len(keep); d > 0 {
		t.droppedDst.Add(uint64(d))
	}
	if len(keep) == 0 {
		return 0, nil
	}
	n, err := t.Device.Write(keep, offset)
	t.fromEdgePackets.Add(uint64(len(keep)))
	t.fromEdgeBytes.Add(uint64(b))
	if err != nil {
		t.writeErrors.Add(1)
	}
	return n, err
}

// stats fills the TUN counters of s.
func (t *tunDev) stats(s *Stats) {
	s.ToEdgePackets = t.toEdgePackets.Load()
	s.ToEdgeBytes = t.toEdgeBytes.Load()
	s.FromEdgePackets = t.fromEdgePackets.Load()
	s.FromEdgeBytes = t.fromEdgeBytes.Load()
	s.TUNWriteErrors = t.writeErrors.Load()
	s.DroppedDestination = t.droppedDst.Load()
	s.LinkUp = t.up.Load()
}

// Info describes a started connector.
type Info struct {
	Plan
	// EdgeAddr is the edge endpoint as resolved at start (the first,
	// with several edges).
	EdgeAddr netip.AddrPort
	// EdgeAddrs are the edge endpoints as resolved, in the order of
	// l3.yml's.
	EdgeAddrs []netip.AddrPort
	// Port is the UDP port the device listens on.
	Port int
	// Offloads are what the TUN and the UDP socket do in batches.
	Offloads Offloads
	// ForwardingEnabled lists the sysctls Start turned on (those already on
	// are not listed).
	ForwardingEnabled []string
}

// Offloads are what the TUN and the UDP socket do in batches.
// tun.CreateTUN enables the TUN's itself and does not export what it got,
// so the connector asks the kernel the same questions (see probeOffloads).
type Offloads struct {
	// TUNBatch is how many packets one TUN read or write may carry; more
	// than 1 when the TUN has virtio-net headers.
	TUNBatch int
	// TSO: the TUN takes TCP segmentation and checksum offload (TSO4,
	// TSO6, CSUM): the kernel hands the connector TCP super-segments of
	// up to 64 KiB, which it splits, and it writes TCP packets back
	// coalesced (GRO).
	TSO bool
	// USO: the same for UDP (USO4, USO6; Linux 6.2 and later).
	USO bool
	// UDPGSO and UDPGRO: the UDP socket to the edge sends batches of
	// equal-sized datagrams as one (UDP_SEGMENT) and receives them
	// coalesced (UDP_GRO).
	UDPGSO, UDPGRO bool
	// BindBatch is how many datagrams one socket receive carries (each a
	// GRO super-datagram of up to 64 KiB).
	BindBatch int
}

// String lists the offloads, for example
// "tun: csum tso4 tso6 uso4 uso6, batch 128; udp: gso gro, batch 128".
func (o Offloads) String() string {
	var tunF, udpF []string
	if o.TSO {
		tunF = append(tunF, "csum", "tso4", "tso6")
	}
	if o.USO {
		tunF = append(tunF, "uso4", "uso6")
	}
	if len(tunF) == 0 {
		tunF = append(tunF, "none")
	}
	if o.UDPGSO {
		udpF = append(udpF, "gso")
	}
	if o.UDPGRO {
		udpF = append(udpF, "gro")
	}
	if len(udpF) == 0 {
		udpF = append(udpF, "none")
	}
	return "tun: " + strings.Join(tunF, " ") + ", batch " + strconv.Itoa(o.TUNBatch) +
		"; udp: " + strings.Join(udpF, " ") + ", batch " + strconv.Itoa(o.BindBatch)
}
