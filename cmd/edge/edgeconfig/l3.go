package edgeconfig

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/onramp-net/onramp/dataplane/steer"
	"github.com/onramp-net/onramp/l3router"
	"github.com/onramp-net/onramp/l3router/wg"
)

// L3 defaults.
var (
	// DefaultPool4 is the IPv4 pool clients and connectors get their
	// virtual addresses from (inside 100.64.0.0/10, shared address space).
	DefaultPool4 = netip.MustParsePrefix("100.96.0.0/12")
	// DefaultPool6 is the IPv6 pool: a ULA /48 ("onram" in hex).
	DefaultPool6 = netip.MustParsePrefix("fd6f:6e72:616d::/48")
)

// DefaultL3MTU is the default MTU of the L3 on-ramp (wireguard-go's).
const DefaultL3MTU = l3router.DefaultMTU

// DefaultAddressReuseDelay is how long a removed client's or connector's
// virtual addresses are held back before a new peer gets them. LAN hosts
// know peers by address: firewall rules, logs, connection tracking and
// caches outlive the peer. A day outlasts what the network itself keeps
// about an address (a WireGuard session, connections whose peer has gone
// silent) and the day's logs an administrator reads to tell who was
// there, while costing little: the default IPv4 pool holds about a million
// addresses, so only a pool sized to the peers fills up with held ones,
// and then the error says so.
const DefaultAddressReuseDelay = 24 * time.Hour

// DefaultL3MaxStagedBytes is the default of l3.max_staged_bytes: what the
// WireGuard device holds, all peers together, of the packets for peers
// without a session while their handshake is under way (16 MiB, about
// 11,000 full-sized packets; the device's own default).
const DefaultL3MaxStagedBytes = 16 << 20

// L3 configures the L3 on-ramp, the edge's WireGuard hub:
//
//	l3:
//	  listen: "[::]:51820"                   # WireGuard UDP port, every address (or one: "198.18.0.7:51820"); empty: L3 off
//	  endpoint: "edge.example.test:51820"    # what clients and connectors dial
//	  pools: {ipv4: 100.96.0.0/12, ipv6: "fd6f:6e72:616d::/48"}
//	  mtu: 1420
//	  dns: [198.18.30.53]                    # optional, written into client configs
//	  max_staged_bytes: 16777216             # packets held for peers without a session, all peers
//	  steering: true                         # eBPF steering over the device's sockets (handshakes apart, peers kept on their loop)
//	  loops: 0                               # receive loops (and sockets) per family; 0: one per CPU
//	  acl:                                   # l3router.ACLConfig
//	    builtin_deny: reject
//	    rules:
//	      - {action: allow, from: {kinds: [connector]}, to: {kinds: [connector]}}
//	  failover:                              # connectors advertising the same subnet; defaults shown
//	    stale_after: 3s                      # a connector not heard from for this long loses its subnets to a partner
//	    failback_after: 30s                  # the preferred connector (first by name) up this long gets them back; 0s: never
//	  handshakes:                            # what strangers can make the device do; defaults shown
//	    per_second: 2000                     # handshake messages a second, all sources; over half: under load
//	    per_source_per_second: 20            # under load, per IPv4 address or IPv6 /64 proven by a cookie
//	    per_source_burst: 5
//	    max_sources: 16384                   # sources tracked under load; a full table refuses new ones
type L3 struct {
	// Listen is the UDP address of the WireGuard device. With no host or
	// an unspecified one (":51820", "[::]:51820", "0.0.0.0:51820") it
	// listens on every address of both families, and answers each peer
	// from the address the peer wrote to (so a host with several
	// addresses works for peers behind NAT); with an IP address
	// ("198.18.0.7:51820", "[fd00::7]:51820") it listens on that address
	// only, and so on its family only. Empty: the L3 on-ramp is off.
	Listen string `yaml:"listen"`
	// Endpoint is the host:port clients and connectors are told to dial.
	// If empty, it is the host of advertise[0] with the port of Listen.
	Endpoint string `yaml:"endpoint"`
	// ClientEndpoint, if set, is the host:port written into client
	// configs instead of Endpoint. With several edges sharing the
	// registry, Endpoint is each edge's own (connectors keep a session
	// with every edge) and ClientEndpoint a DNS name or an address that
	// moves between the edges (a stock WireGuard client has one endpoint).
	ClientEndpoint string `yaml:"client_endpoint"`
	// Pools are where virtual addresses come from; the first address of
	// each is the edge router's own (the source of its ICMP errors).
	Pools Pools `yaml:"pools"`
	// MTU of the WireGuard device and of client configs (DefaultL3MTU).
	MTU int `yaml:"mtu"`
	// QueueLen is obsolete and ignored (the edge logs a warning if it is
	// set): it sized the router's queue between wireguard-go's decryption
	// and encryption, and the edge's own WireGuard device forwards each
	// packet in place, without a queue. Accepted so that configurations
	// written for that version still load.
	QueueLen int `yaml:"queue_len"`
	// DNS servers (addresses) or search domains written into client
	// configs; optional.
	DNS []string `yaml:"dns"`
	// ACL is the access policy between clients and connectors.
	ACL l3router.ACLConfig `yaml:"acl"`
	// AddressReuseDelay is how long a removed client's or connector's
	// virtual addresses are held back before a new peer gets them
	// (DefaultAddressReuseDelay if unset; 0: given out again at once).
	AddressReuseDelay *Duration `yaml:"address_reuse_delay"`
	// MaxStagedBytes bounds the packets the WireGuard device holds, all
	// peers together, for peers without a session until their handshake
	// completes (each peer's newest 128, none older than 90 s); past it
	// they are dropped (DefaultL3MaxStagedBytes if 0). 10,000 clients
	// that never connect, and a LAN host sending to each, cost no more.
	MaxStagedBytes int `yaml:"max_staged_bytes"`
	// Steering puts an eBPF SO_REUSEPORT program over the WireGuard
	// device's sockets (on unless false): handshake messages and garbage
	// go to a socket and loop of their own, so that a flood of them never
	// queues in front of transport packets, and each peer's transport
	// messages to the loop that owns its session, where they stay when
	// the peer's NAT rebinds its port. Where the program cannot load (no
	// eBPF, no CAP_BPF) the edge says so once and the kernel's hash
	// spreads the datagrams, as with false.
	Steering *bool `yaml:"steering"`
	// Loops is the number of the WireGuard device's receive loops, and of
	// its sockets, per address family; 0: one per CPU the edge may use
	// (GOMAXPROCS).
	Loops int `yaml:"loops"`

	// Handshakes bounds the WireGuard handshake work strangers can make
	// the edge do.
	Handshakes L3Handshakes `yaml:"handshakes"`

	// Failover bounds the subnet failover between connectors that
	// advertise the same subnet.
	Failover L3Failover `yaml:"failover"`
}

// L3Failover bounds the subnet failover (docs/ARCHITECTURE.md, "Subnet
// failover"). The edge routes a subnet that several connectors advertise
// to one of them; it moves the subnet away from that connector when the
// edge has not heard from it (handshake, keepalive or data: connectors
// send a keepalive every second) for StaleAfter, to the first connector
// by name that has been heard from without such a silence for StaleAfter,
// and back to a connector preferred to the active one (its name sorts
// first) once that one has been up for FailbackAfter. Unset fields are the
// defaults.
type L3Failover struct {
	// StaleAfter (DefaultL3StaleAfter; MinL3StaleAfter to
	// MaxL3StaleAfter): at most this plus a quarter second of loss at a
	// failover.
	StaleAfter *Duration `yaml:"stale_after"`
	// FailbackAfter (DefaultL3FailbackAfter; 0: never fail back, the
	// active connector keeps the subnet while it is alive). At least
	// StaleAfter: a link that flaps with up periods shorter than this
	// moves the subnet once, not back and forth.
	FailbackAfter *Duration `yaml:"failback_after"`
}

// Subnet failover bounds and defaults (hub.DefaultStaleAfter and
// hub.DefaultFailbackAfter).
const (
	DefaultL3StaleAfter    = 3 * time.Second
	DefaultL3FailbackAfter = 30 * time.Second
	// MinL3StaleAfter is two of the connectors' keepalives (1 s).
	MinL3StaleAfter = 2 * time.Second
	MaxL3StaleAfter = time.Minute
)

// Bounds returns the stale and failback bounds, defaults filled;
// failback is negative for never.
func (f L3Failover) Bounds() (stale, failback time.Duration) {
	stale, failback = DefaultL3StaleAfter, DefaultL3FailbackAfter
	if f.StaleAfter != nil {
		stale = time.Duration(*f.StaleAfter)
	}
	if f.FailbackAfter != nil {
		failback = time.Duration(*f.FailbackAfter)
		if failback == 0 {
			failback = -1
		}
	}
	return stale, failback
}

func (f L3Failover) validate() error {
	stale, failback := f.Bounds()
	if stale < MinL3StaleAfter || stale > MaxL3StaleAfter {
		return fmt.Errorf("edge config: l3.failover.stale_after: %v: want %v to %v (connectors send a keepalive every second)", stale, MinL3StaleAfter, MaxL3StaleAfter)
	}
	if failback >= 0 && failback < stale {
		return fmt.Errorf("edge config: l3.failover.failback_after: %v is shorter than l3.failover.stale_after (%v); 0s: never fail back", failback, stale)
	}
	return nil
}

// L3Handshakes bounds the handshake messages (initiations and responses
// with a valid mac1, each costing a Diffie-Hellman or more) the WireGuard
// device processes; see [wg.HandshakeLimits] for how. A zero or missing
// value is the default.
//
// Each message takes a token of PerSecond, the device's budget. With more
// than half of it spent (or so less than a second ago) the device is under
// load: it answers a message without a cookie (mac2) with a cookie reply,
// and processes one with a cookie within its source's limit,
// PerSourcePerSecond with a burst of PerSourceBurst per IPv4 address or
// IPv6 /64, in a table of at most MaxSources sources; a full table refuses
// new sources until entries go idle. The refusals are counted in
// onramp_edge_l3_handshake_messages_total{result} and logged at most every
// 10 seconds.
type L3Handshakes struct {
	PerSecond          int `yaml:"per_second"`            // wg.DefaultHandshakesPerSecond
	PerSourcePerSecond int `yaml:"per_source_per_second"` // wg.DefaultHandshakesPerSourcePerSecond
	PerSourceBurst     int `yaml:"per_source_burst"`      // wg.DefaultHandshakesPerSourceBurst
	MaxSources         int `yaml:"max_sources"`           // wg.DefaultHandshakeSources
}

// Bounds of L3Handshakes: the rates and the burst are kept at nanosecond
// resolution; the table of sources is swept whole once its entries may be
// idle (at least every second), under the lock of the handshakes under
// load.
const (
	maxL3HandshakeRate    = 1_000_000
	maxL3HandshakeSources = 1 << 20
)

// Limits returns the device's handshake limits.
func (h L3Handshakes) Limits() wg.HandshakeLimits {
	return wg.HandshakeLimits{PerSecond: h.PerSecond, PerSourcePerSecond: h.PerSourcePerSecond,
		PerSourceBurst: h.PerSourceBurst, MaxSources: h.MaxSources}
}

// Pools are the virtual address pools of the L3 on-ramp.
type Pools struct {
	IPv4 netip.Prefix `yaml:"ipv4"`
	IPv6 netip.Prefix `yaml:"ipv6"`
}

// ReuseDelay returns AddressReuseDelay (the default if unset).
func (l *L3) ReuseDelay() time.Duration {
	if l.AddressReuseDelay == nil {
		return DefaultAddressReuseDelay
	}
	return time.Duration(*l.AddressReuseDelay)
}

// Enabled reports whether the L3 on-ramp is on (Listen is set).
func (l *L3) Enabled() bool { return l.Listen != "" }

// ListenPort returns the port of Listen (0 if unset or invalid).
func (l *L3) ListenPort() int {
	_, port, err := net.SplitHostPort(l.Listen)
	if err != nil {
		return 0
	}
	p, _ := strconv.Atoi(port)
	return p
}

func (c *Config) fillL3() {
	l := &c.L3
	if !l.Pools.IPv4.IsValid() {
		l.Pools.IPv4 = DefaultPool4
	}
	if !l.Pools.IPv6.IsValid() {
		l.Pools.IPv6 = DefaultPool6
	}
	if l.MTU == 0 {
		l.MTU = DefaultL3MTU
	}
	h := &l.Handshakes
	for _, f := range []struct {
		v   *int
		def int
	}{
		{&h.PerSecond, wg.DefaultHandshakesPerSecond},
		{&h.PerSourcePerSecond, wg.DefaultHandshakesPerSourcePerSecond},
		{&h.PerSourceBurst, wg.DefaultHandshakesPerSourceBurst},
		{&h.MaxSources, wg.DefaultHandshakeSources},
	} {
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if l.AddressReuseDelay == nil {
		d := Duration(DefaultAddressReuseDelay)
		l.AddressReuseDelay = &d
	}
	if l.MaxStagedBytes == 0 {
		l.MaxStagedBytes = DefaultL3MaxStagedBytes
	}
	if l.Steering == nil {
		on := true
		l.Steering = &on
	}
	if l.Endpoint == "" && l.Listen != "" && len(c.Advertise) > 0 {
		host, _, err1 := net.SplitHostPort(c.Advertise[0])
		if port := l.ListenPort(); err1 == nil && host != "" && port != 0 {
			l.Endpoint = net.JoinHostPort(host, strconv.Itoa(port))
		}
	}
}

func (c *Config) validateL3() error {
	l := &c.L3
	if l.Listen != "" {
		if err := checkHostPort(l.Listen); err != nil {
			return fmt.Errorf("edge config: l3.listen: %w", err)
		}
		host, _, _ := net.SplitHostPort(l.Listen)
		if _, err := netip.ParseAddr(host); host != "" && err != nil {
			return fmt.Errorf("edge config: l3.listen: %q: the host must be an IP address of this machine, or none for every address ([::]:PORT or :PORT)", l.Listen)
		}
	}
	for _, e := range []struct{ field, v, who string }{
		{"l3.endpoint", l.Endpoint, "clients and connectors"},
		{"l3.client_endpoint", l.ClientEndpoint, "clients"},
	} {
		if e.v == "" {
			continue
		}
		host, port, err := net.SplitHostPort(e.v)
		if err != nil {
			return fmt.Errorf("edge config: %s: %q: want host:port ([v6]:port for IPv6): %v", e.field, e.v, err)
		}
		if host == "" || strings.ContainsAny(host, " /,") {
			return fmt.Errorf("edge config: %s: %q needs a host that %s can reach", e.field, e.v, e.who)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return fmt.Errorf("edge config: %s: %q: port %q is not a number 1-65535", e.field, e.v, port)
		}
	}
	if err := checkPool("l3.pools.ipv4", l.Pools.IPv4, true); err != nil {
		return err
	}
	if err := checkPool("l3.pools.ipv6", l.Pools.IPv6, false); err != nil {
		return err
	}
	if l.Pools.IPv4.Overlaps(l.Pools.IPv6) {
		return fmt.Errorf("edge config: l3.pools: ipv4 %v and ipv6 %v overlap", l.Pools.IPv4, l.Pools.IPv6)
	}
	if l.Loops < 0 || l.Loops > steer.MaxLoops {
		return fmt.Errorf("edge config: l3.loops: %d: want 0 (one per CPU) to %d", l.Loops, steer.MaxLoops)
	}
	if l.MaxStagedBytes < 0 {
		return fmt.Errorf("edge config: l3.max_staged_bytes: %d is negative", l.MaxStagedBytes)
	}
	if l.MTU < l3router.MinMTU || l.MTU > l3router.MaxMTU {
		return fmt.Errorf("edge config: l3.mtu: %d is outside %d-%d", l.MTU, l3router.MinMTU, l3router.MaxMTU)
	}
	for i, d := range l.DNS {
		if _, err := netip.ParseAddr(d); err == nil {
			continue
		}
		if err := CheckPattern(d); err != nil || strings.HasPrefix(d, "*.") {
			return fmt.Errorf("edge config: l3.dns[%d]: %q is neither an IP address nor a search domain", i, d)
		}
	}
	if err := l.ACL.Check(); err != nil {
		return fmt.Errorf("edge config: l3.acl: %w", err)
	}
	if err := l.Failover.validate(); err != nil {
		return err
	}
	return l.Handshakes.validate()
}

func (h *L3Handshakes) validate() error {
	for _, f := range []struct {
		name string
		v    int
		max  int
	}{
		{"per_second", h.PerSecond, maxL3HandshakeRate},
		{"per_source_per_second", h.PerSourcePerSecond, maxL3HandshakeRate},
		{"per_source_burst", h.PerSourceBurst, maxL3HandshakeRate},
		{"max_sources", h.MaxSources, maxL3HandshakeSources},
	} {
		if f.v < 0 {
			return fmt.Errorf("edge config: l3.handshakes.%s: %d is negative", f.name, f.v)
		}
		if f.v > f.max {
			return fmt.Errorf("edge config: l3.handshakes.%s: %d is more than %d", f.name, f.v, f.max)
		}
	}
	if h.PerSourcePerSecond > h.PerSecond {
		return fmt.Errorf("edge config: l3.handshakes.per_source_per_second: %d is above l3.handshakes.per_second (%d)", h.PerSourcePerSecond, h.PerSecond)
	}
	return nil
}

// checkPool checks a pool prefix: of its family, masked, with room for
// the router's address and at least one more.
func checkPool(field string, p netip.Prefix, v4 bool) error {
	switch {
	case !p.IsValid():
		return fmt.Errorf("edge config: %s: invalid prefix", field)
	case v4 && !p.Addr().Is4():
		return fmt.Errorf("edge config: %s: %v is not an IPv4 prefix", field, p)
	case !v4 && (!p.Addr().Is6() || p.Addr().Is4In6()):
		return fmt.Errorf("edge config: %s: %v is not an IPv6 prefix", field, p)
	case p.Addr().Zone() != "":
		return fmt.Errorf("edge config: %s: %v has a zone", field, p)
	case p != p.Masked():
		return fmt.Errorf("edge config: %s: %v has host bits set (did you mean %v?)", field, p, p.Masked())
	case p.Bits() > p.Addr().BitLen()-2:
		return fmt.Errorf("edge config: %s: %v is too small: want /%d or shorter (the network, the router and at least one peer address)", field, p, p.Addr().BitLen()-2)
	}
	return nil
}
