package l3router

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/onramp-net/onramp/dataplane/packet"
	"go.yaml.in/yaml/v3"
)

const yamlConfig = `
name: edge0
mtu: 1420
address4: 198.18.0.1
address6: fd00::1
peers:
  - {name: alice, kind: client, groups: [eng], routes: [198.18.1.2/32, fd00:1::2/128]}
  - {name: bob, kind: client, groups: [sales], routes: [198.18.1.3/32, fd00:1::3/128]}
  - {name: carol, kind: client, groups: [eng, contractors], routes: [198.18.1.4/32]}
  - {name: conn-a, kind: connector, routes: [198.19.10.0/24, fd00:10::/64]}
acl:
  builtin_deny: reject
  rules:
    - {action: reject, from: {groups: [contractors]}, to: {prefixes: [198.19.10.0/25]}, proto: tcp, ports: ["22", "6000-6010"]}
    - {action: drop, from: {kinds: [client]}, to: {peers: [conn-a]}, proto: udp, ports: ["161"]}
    - {action: allow, from: {groups: [eng]}, to: {groups: [eng]}}
    - {action: allow, from: {peers: [bob]}, to: {prefixes: [198.18.1.2/32]}, proto: icmp}
`

func TestACLFromYAML(t *testing.T) {
	var cfg Config
	if err := yaml.Unmarshal([]byte(yamlConfig), &cfg); err != nil {
		t.Fatal(err)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st := r.state.Load()
	carol := netip.MustParseAddr("198.18.1.4")
	for _, tc := range []struct {
		name     string
		src, dst netip.Addr
		proto    uint8
		port     uint16
		want     Action
	}{
		{"client to lan", aliceV4, hostA4, packet.ProtoTCP, 22, ActionAllow},
		{"lan to client", hostA4, bobV4, packet.ProtoUDP, 5000, ActionAllow},
		{"contractor ssh to low half", carol, hostA4, packet.ProtoTCP, 22, ActionReject},
		{"contractor x11 range", carol, hostA4, packet.ProtoTCP, 6005, ActionReject},
		{"contractor https", carol, hostA4, packet.ProtoTCP, 443, ActionAllow},
		{"contractor ssh to high half", carol, netip.MustParseAddr("198.19.10.200"), packet.ProtoTCP, 22, ActionAllow},
		{"contractor ssh udp", carol, hostA4, packet.ProtoUDP, 22, ActionAllow},
		{"snmp from clients", bobV4, hostA4, packet.ProtoUDP, 161, ActionDrop},
		{"snmp from lan is not from a client", hostA4, bobV4, packet.ProtoUDP, 161, ActionAllow},
		{"eng to eng", aliceV4, carol, packet.ProtoUDP, 1, ActionAllow},
		{"eng to eng reverse", carol, aliceV4, packet.ProtoTCP, 1, ActionAllow},
		{"sales to eng", bobV4, aliceV4, packet.ProtoTCP, 80, ActionReject},
		{"bob pings alice", bobV4, aliceV4, packet.ProtoICMPv4, 0, ActionAllow},
		{"bob pings alice over v6 (prefix is v4)", bobV6, aliceV6, packet.ProtoICMPv6, 0, ActionReject},
		{"icmpv6 number in v4 is not icmp", bobV4, aliceV4, packet.ProtoICMPv6, 0, ActionReject},
		{"lan to lan", hostA4, hostA4, packet.ProtoTCP, 1, ActionReject},
	} {
		f := flow{src: tc.src, dst: tc.dst, srcP: st.fib.lookup(tc.src), dstP: st.fib.lookup(tc.dst),
			proto: tc.proto, dstPort: tc.port, hasPorts: tc.proto == packet.ProtoTCP || tc.proto == packet.ProtoUDP, v6: tc.src.Is6()}
		if f.srcP == nil || f.dstP == nil {
			t.Fatalf("%s: no route", tc.name)
		}
		if got := st.acl.eval(&f); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	// A non-first fragment has no ports: the port rules do not match it.
	f := flow{src: carol, dst: hostA4, srcP: st.fib.lookup(carol), dstP: st.fib.lookup(hostA4), proto: packet.ProtoTCP}
	if got := st.acl.eval(&f); got != ActionAllow {
		t.Errorf("fragment: %v", got)
	}
}

func TestACLDefaults(t *testing.T) {
	for _, tc := range []struct {
		def  string
		want Action
	}{{"allow", ActionAllow}, {"drop", ActionDrop}, {"reject", ActionReject}} {
		r := newTestRouter(t, func(c *Config) { c.ACL.Default = tc.def })
		st := r.state.Load()
		// Even client to connector follows an explicit default.
		f := flow{src: aliceV4, dst: hostA4, srcP: st.fib.lookup(aliceV4), dstP: st.fib.lookup(hostA4)}
		if got := st.acl.eval(&f); got != tc.want {
			t.Errorf("default %s: %v", tc.def, got)
		}
	}
}

func TestACLErrors(t *testing.T) {
	r := newTestRouter(t, nil)
	for _, tc := range []struct {
		cfg  ACLConfig
		want string
		is   error
	}{
		{ACLConfig{Default: "maybe"}, `acl default: action "maybe"`, ErrBadRule},
		{ACLConfig{BuiltinDeny: "allow"}, `builtin_deny "allow"`, ErrBadRule},
		{ACLConfig{Rules: []RuleConfig{{Action: "permit"}}}, `acl rule 1: action "permit"`, ErrBadRule},
		{ACLConfig{Rules: []RuleConfig{{Action: "allow"}, {Action: "allow", From: Selector{Peers: []PeerID{"mallory"}}}}}, `acl rule 2: from: peer "mallory"`, ErrUnknownPeer},
		{ACLConfig{Rules: []RuleConfig{{Action: "allow", To: Selector{Groups: []string{"nobody"}}}}}, `to: group "nobody"`, ErrBadRule},
		{ACLConfig{Rules: []RuleConfig{{Action: "allow", Proto: "sctp"}}}, `proto "sctp"`, ErrBadRule},
		{ACLConfig{Rules: []RuleConfig{{Action: "allow", Proto: "icmp", Ports: []string{"1"}}}}, `ports [1]: need proto tcp or udp`, ErrBadRule},
		{ACLConfig{Rules: []RuleConfig{{Action: "allow", Proto: "tcp", Ports: []string{"0"}}}}, `port "0"`, ErrBadRule},
		{ACLConfig{Rules: []RuleConfig{{Action: "allow", Proto: "tcp", Ports: []string{"90-80"}}}}, `port range "90-80"`, ErrBadRule},
		{ACLConfig{Rules: []RuleConfig{{Action: "allow", Proto: "udp", Ports: []string{"70000"}}}}, `port "70000"`, ErrBadRule},
		{ACLConfig{Rules: []RuleConfig{{Action: "allow", To: Selector{Prefixes: []netip.Prefix{netip.MustParsePrefix("198.19.10.1/24")}}}}}, `host bits set`, ErrBadPrefix},
	} {
		err := r.SetACL(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, tc.is) {
			t.Errorf("SetACL(%+v) = %v; want %q, %v", tc.cfg, err, tc.want, tc.is)
		}
	}
	// The old policy survives a failed SetACL.
	if out := pass(t, r, udpPacket(t, aliceV4, hostA4, 64, 100)); len(out) != 1 {
		t.Fatal("policy lost")
	}
	var cfg Config
	err := yaml.Unmarshal([]byte("peers: [{name: x, kind: server}]"), &cfg)
	if err == nil || !strings.Contains(err.Error(), `peer kind "server"`) {
		t.Errorf("bad kind: %v", err)
	}
}
