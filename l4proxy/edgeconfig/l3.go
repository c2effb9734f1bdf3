package edgeconfig

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/onramp-net/onramp/l3router"
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

// L3 configures the L3 on-ramp, the edge's WireGuard hub:
//
//	l3:
//	  listen: "[::]:51820"                   # WireGuard UDP port, every address (or one: "198.18.0.7:51820"); empty: L3 off
//	  endpoint: "edge.example.test:51820"    # what clients and connectors dial
//	  pools: {ipv4: 100.96.0.0/12, ipv6: "fd6f:6e72:616d::/48"}
//	  mtu: 1420
//	  dns: [198.18.30.53]                    # optional, written into client configs
//	  acl:                                   # l3router.ACLConfig
//	    builtin_deny: reject
//	    rules:
//	      - {action: allow, from: {kinds: [connector]}, to: {kinds: [connector]}}
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
	if l.AddressReuseDelay == nil {
		d := Duration(DefaultAddressReuseDelay)
		l.AddressReuseDelay = &d
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
	if l.Endpoint != "" {
		host, port, err := net.SplitHostPort(l.Endpoint)
		if err != nil {
			return fmt.Errorf("edge config: l3.endpoint: %q: want host:port ([v6]:port for IPv6): %v", l.Endpoint, err)
		}
		if host == "" || strings.ContainsAny(host, " /,") {
			return fmt.Errorf("edge config: l3.endpoint: %q needs a host that clients and connectors can reach", l.Endpoint)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return fmt.Errorf("edge config: l3.endpoint: %q: port %q is not a number 1-65535", l.Endpoint, port)
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
