package l3router

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
)

func TestReplacePeer(t *testing.T) {
	r := newTestRouter(t, nil)
	if got := pass(t, r, udpPacket(t, aliceV4, hostA4, 64, 100)); len(got) != 1 {
		t.Fatalf("before: %d packets forwarded", len(got))
	}
	if r.Stats().Peers["alice"].RxPackets != 1 {
		t.Fatal("rx not counted")
	}
	r.RemoveOwner("alice")

	// alice comes back with a new address and another group.
	newV4 := netip.MustParseAddr("198.18.1.9")
	err := r.ReplacePeer(PeerConfig{Name: "alice", Kind: KindClient, Groups: []string{"ops"}, Routes: []netip.Prefix{host(newV4)}})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.AllowedIPs("alice"); !slices.Equal(got, []netip.Prefix{host(newV4)}) {
		t.Fatalf("AllowedIPs = %v", got)
	}
	if s := r.Stats().Peers["alice"]; s.RxPackets != 0 {
		t.Fatalf("counters not reset: %+v", s)
	}
	if got := pass(t, r, udpPacket(t, newV4, hostA4, 64, 100)); len(got) != 1 {
		t.Fatal("new address not routed")
	}
	// Replies to the old address find no route: an ICMP error goes to conn-a.
	pass(t, r, udpPacket(t, hostA4, aliceV4, 64, 100))
	if d := r.Stats().Peers["conn-a"].Drops[DropNoRoute]; d != 1 {
		t.Fatalf("no-route drops %d, want 1", d)
	}
	// The ACL sees the new group.
	if err := r.SetACL(ACLConfig{Rules: []RuleConfig{{Action: "drop", From: Selector{Groups: []string{"ops"}}}}}); err != nil {
		t.Fatal(err)
	}
	if got := pass(t, r, udpPacket(t, newV4, hostA4, 64, 100)); len(got) != 0 {
		t.Fatal("ops group rule not applied")
	}

	// A route overlapping another peer's changes nothing.
	err = r.ReplacePeer(PeerConfig{Name: "alice", Kind: KindClient, Routes: []netip.Prefix{host(bobV4)}})
	if !errors.Is(err, ErrOverlap) {
		t.Fatalf("overlap: %v", err)
	}
	if got := r.AllowedIPs("alice"); !slices.Equal(got, []netip.Prefix{host(newV4)}) {
		t.Fatalf("after failed replace AllowedIPs = %v", got)
	}
	// Dropping the only member of a group the ACL names is refused.
	err = r.ReplacePeer(PeerConfig{Name: "alice", Kind: KindClient, Routes: []netip.Prefix{host(newV4)}})
	if !errors.Is(err, ErrBadRule) {
		t.Fatalf("group vanishing: %v", err)
	}
	// An unknown name is added.
	if err := r.ReplacePeer(PeerConfig{Name: "conn-b", Kind: KindConnector, Routes: []netip.Prefix{netip.MustParsePrefix("198.19.20.0/24")}}); err != nil {
		t.Fatal(err)
	}
	if p, ok := r.Lookup(netip.MustParseAddr("198.19.20.1")); !ok || p != "conn-b" {
		t.Fatalf("Lookup = %v %v", p, ok)
	}
}

func TestACLCheck(t *testing.T) {
	c := ACLConfig{Rules: []RuleConfig{
		{Action: "allow", From: Selector{Peers: []PeerID{"alice"}, Groups: []string{"eng"}}, To: Selector{Peers: []PeerID{"bob", "alice"}}},
		{Action: "reject", From: Selector{Groups: []string{"eng", "ops"}}, Proto: "tcp", Ports: []string{"22"}},
	}}
	peers, groups := c.Names()
	if !slices.Equal(peers, []PeerID{"alice", "bob"}) || !slices.Equal(groups, []string{"eng", "ops"}) {
		t.Fatalf("Names = %v %v", peers, groups)
	}
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	c.Rules[1].Proto = "udp-lite"
	if err := c.Check(); !errors.Is(err, ErrBadRule) || err.Error() != `acl rule 2: proto "udp-lite": want tcp, udp, icmp, any or a number 0-255 (bad acl rule)` {
		t.Fatalf("Check = %v", err)
	}
}
