package l3router

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/onramp-net/onramp/dataplane/packet"
)

// ACLConfig is the access policy between peers and the hosts behind them.
//
// Rules are evaluated in order and the first matching rule decides. When no
// rule matches, Default decides. The evaluation is stateless and per
// direction: a rule letting alice reach bob does not let bob's replies reach
// alice; allow both directions.
//
// In YAML:
//
//	acl:
//	  default: builtin
//	  builtin_deny: reject
//	  rules:
//	    - {action: allow, from: {peers: [alice]}, to: {peers: [bob]}}
//	    - {action: allow, from: {peers: [bob]}, to: {peers: [alice]}}
//	    - {action: reject, from: {groups: [contractors]}, to: {prefixes: [198.18.64.0/24]}, proto: tcp, ports: ["22"]}
type ACLConfig struct {
	Rules []RuleConfig `yaml:"rules"`
	// Default is the action when no rule matches: "builtin" (or empty)
	// for the built-in policy, "allow", "drop" or "reject".
	//
	// The built-in policy allows clients to reach connectors' subnets
	// and hosts in connectors' subnets to reach clients, and denies
	// everything else: client to client, and connector to connector
	// (site to site needs a rule).
	Default string `yaml:"default"`
	// BuiltinDeny is how the built-in policy denies: "drop" (or empty)
	// or "reject" (answer with ICMP administratively prohibited).
	BuiltinDeny string `yaml:"builtin_deny"`
}

// RuleConfig is one ACL rule. Empty fields match anything.
type RuleConfig struct {
	// Action is "allow", "drop" (deny silently) or "reject" (deny with
	// ICMP administratively prohibited: IPv4 type 3 code 13, IPv6 type 1
	// code 1).
	Action string `yaml:"action"`
	// From matches the source: the peer that owns the source address and
	// the address itself.
	From Selector `yaml:"from"`
	// To matches the destination likewise.
	To Selector `yaml:"to"`
	// Proto is "tcp", "udp", "icmp" (ICMPv4 or ICMPv6) or a protocol
	// number; empty or "any" matches every protocol.
	Proto string `yaml:"proto"`
	// Ports are destination ports or ranges ("443", "8000-8100"), for tcp
	// and udp only. A non-first fragment has no ports and never matches a
	// rule with ports.
	Ports []string `yaml:"ports"`
}

// Selector matches one end of a packet. It matches when any of its items
// does; an empty Selector matches everything.
type Selector struct {
	// Peers are peer names: the peer owns the address.
	Peers []PeerID `yaml:"peers"`
	// Groups are group names: the owner of the address is in the group.
	Groups []string `yaml:"groups"`
	// Kinds are peer kinds: the owner is a client or a connector.
	Kinds []PeerKind `yaml:"kinds"`
	// Prefixes contain the address.
	Prefixes []netip.Prefix `yaml:"prefixes"`
}

func (s *Selector) empty() bool {
	return len(s.Peers) == 0 && len(s.Groups) == 0 && len(s.Kinds) == 0 && len(s.Prefixes) == 0
}

// Action is an ACL verdict.
type Action uint8

// Actions.
const (
	ActionAllow  Action = iota // forward
	ActionDrop                 // deny silently
	ActionReject               // deny with ICMP administratively prohibited
)

// String returns "allow", "drop" or "reject".
func (a Action) String() string {
	switch a {
	case ActionAllow:
		return "allow"
	case ActionDrop:
		return "drop"
	case ActionReject:
		return "reject"
	}
	return fmt.Sprintf("Action(%d)", uint8(a))
}

func parseAction(s string) (Action, error) {
	switch s {
	case "allow":
		return ActionAllow, nil
	case "drop", "deny":
		return ActionDrop, nil
	case "reject":
		return ActionReject, nil
	}
	return 0, fmt.Errorf("action %q: want allow, drop or reject", s)
}

// protoICMPAny matches ICMPv4 in IPv4 packets and ICMPv6 in IPv6 packets.
const protoICMPAny = 256

type portRange struct{ lo, hi uint16 }

// set is a bit set of peer indices.
type set []uint64

func (s set) has(i int) bool {
	w := i >> 6
	return w < len(s) && s[w]&(1<<(uint(i)&63)) != 0
}

func (s *set) add(i int) {
	for i>>6 >= len(*s) {
		*s = append(*s, 0)
	}
	(*s)[i>>6] |= 1 << (uint(i) & 63)
}

// selector is a compiled Selector: the peers it names, by any means, as a
// bit set over peer indices, and its prefixes.
type selector struct {
	any      bool
	peers    set
	prefixes []netip.Prefix
}

func (s *selector) match(p *peer, a netip.Addr) bool {
	if s.any || s.peers.has(p.idx) {
		return true
	}
	for _, pf := range s.prefixes {
		if pf.Contains(a) {
			return true
		}
	}
	return false
}

type rule struct {
	action   Action
	from, to selector
	proto    int // -1 any, protoICMPAny, or 0..255
	ports    []portRange
}

// acl is a compiled ACLConfig. It is immutable.
type acl struct {
	rules       []rule
	def         Action
	builtin     bool
	builtinDeny Action
}

// flow is what the ACL looks at in a packet.
type flow struct {
	src, dst   netip.Addr
	srcP, dstP *peer
	proto      uint8
	dstPort    uint16
	hasPorts   bool
	v6         bool
}

// eval returns the action for f.
func (c *acl) eval(f *flow) Action {
	for i := range c.rules {
		r := &c.rules[i]
		if r.proto >= 0 {
			if r.proto == protoICMPAny {
				if f.proto != packet.ProtoICMPv4 && f.proto != packet.ProtoICMPv6 ||
					f.proto == packet.ProtoICMPv4 && f.v6 || f.proto == packet.ProtoICMPv6 && !f.v6 {
					continue
				}
			} else if int(f.proto) != r.proto {
				continue
			}
		}
		if len(r.ports) > 0 {
			if !f.hasPorts {
				continue
			}
			ok := false
			for _, pr := range r.ports {
				if pr.lo <= f.dstPort && f.dstPort <= pr.hi {
					ok = true
					break
				}
			}
			if !ok {
				continue
			}
		}
		if r.from.match(f.srcP, f.src) && r.to.match(f.dstP, f.dst) {
			return r.action
		}
	}
	if !c.builtin {
		return c.def
	}
	switch {
	case f.srcP.kind == KindClient && f.dstP.kind == KindConnector,
		f.srcP.kind == KindConnector && f.dstP.kind == KindClient:
		return ActionAllow
	}
	return c.builtinDeny
}

// compileACL validates cfg against the peers and compiles it. Errors name
// the rule (numbered from 1) and the field.
func compileACL(cfg *ACLConfig, peers []*peer) (*acl, error) {
	c := &acl{builtinDeny: ActionDrop}
	switch cfg.Default {
	case "", "builtin":
		c.builtin = true
	default:
		a, err := parseAction(cfg.Default)
		if err != nil {
			return nil, fmt.Errorf("acl default: %v (or builtin): %w", err, ErrBadRule)
		}
		c.def = a
	}
	switch cfg.BuiltinDeny {
	case "", "drop":
	case "reject":
		c.builtinDeny = ActionReject
	default:
		return nil, fmt.Errorf("acl builtin_deny %q: want drop or reject: %w", cfg.BuiltinDeny, ErrBadRule)
	}
	byName := make(map[PeerID]*peer, len(peers))
	groups := make(map[string]bool)
	for _, p := range peers {
		if p.id == "" {
			continue // a forgotten peer's tombstone: in no set
		}
		byName[p.id] = p
		for _, g := range p.groups {
			groups[g] = true
		}
	}
	for i := range cfg.Rules {
		rc := &cfg.Rules[i]
		r, err := compileRule(rc, peers, byName, groups)
		if err != nil {
			return nil, fmt.Errorf("acl rule %d: %w (%w)", i+1, err, ErrBadRule)
		}
		c.rules = append(c.rules, r)
	}
	return c, nil
}

func compileRule(rc *RuleConfig, peers []*peer, byName map[PeerID]*peer, groups map[string]bool) (rule, error) {
	var r rule
	var err error
	if r.action, err = parseAction(rc.Action); err != nil {
		return r, err
	}
	if r.from, err = compileSelector(&rc.From, peers, byName, groups); err != nil {
		return r, fmt.Errorf("from: %w", err)
	}
	if r.to, err = compileSelector(&rc.To, peers, byName, groups); err != nil {
		return r, fmt.Errorf("to: %w", err)
	}
	switch p := strings.ToLower(rc.Proto); p {
	case "", "any":
		r.proto = -1
	case "tcp":
		r.proto = int(packet.ProtoTCP)
	case "udp":
		r.proto = int(packet.ProtoUDP)
	case "icmp":
		r.proto = protoICMPAny
	default:
		n, err := strconv.ParseUint(p, 10, 8)
		if err != nil {
			return r, fmt.Errorf("proto %q: want tcp, udp, icmp, any or a number 0-255", rc.Proto)
		}
		r.proto = int(n)
	}
	if len(rc.Ports) > 0 && r.proto != int(packet.ProtoTCP) && r.proto != int(packet.ProtoUDP) {
		return r, fmt.Errorf("ports %v: need proto tcp or udp", rc.Ports)
	}
	for _, ps := range rc.Ports {
		pr, err := parsePortRange(ps)
		if err != nil {
			return r, err
		}
		r.ports = append(r.ports, pr)
	}
	return r, nil
}

func parsePortRange(s string) (portRange, error) {
	lo, hi, isRange := strings.Cut(strings.TrimSpace(s), "-")
	a, err := strconv.ParseUint(lo, 10, 16)
	if err != nil || a == 0 {
		return portRange{}, fmt.Errorf("port %q: want 1-65535 or a range lo-hi", s)
	}
	b := a
	if isRange {
		b, err = strconv.ParseUint(hi, 10, 16)
		if err != nil || b < a {
			return portRange{}, fmt.Errorf("port range %q: want lo-hi with 1 <= lo <= hi <= 65535", s)
		}
	}
	return portRange{uint16(a), uint16(b)}, nil
}

func compileSelector(sc *Selector, peers []*peer, byName map[PeerID]*peer, groups map[string]bool) (selector, error) {
	var s selector
	if sc.empty() {
		s.any = true
		return s, nil
	}
	for _, name := range sc.Peers {
		p, ok := byName[name]
		if !ok {
			return s, fmt.Errorf("peer %q: %w", name, ErrUnknownPeer)
		}
		s.peers.add(p.idx)
	}
	for _, g := range sc.Groups {
		if !groups[g] {
			return s, fmt.Errorf("group %q: no peer is in it", g)
		}
		for _, p := range peers {
			for _, pg := range p.groups {
				if pg == g {
					s.peers.add(p.idx)
				}
			}
		}
	}
	for _, k := range sc.Kinds {
		if k != KindClient && k != KindConnector {
			return s, fmt.Errorf("kind %v: want client or connector", k)
		}
		for _, p := range peers {
			if p.kind == k {
				s.peers.add(p.idx)
			}
		}
	}
	for _, pf := range sc.Prefixes {
		pf, err := checkPrefix(pf)
		if err != nil {
			return s, err
		}
		s.prefixes = append(s.prefixes, pf)
	}
	return s, nil
}
