package l3router

import (
	"fmt"
	"net/netip"
	"testing"
)

// An edge that adds and removes clients for a long time keeps only the
// peers it has: a forgotten peer's routes, counters and slot go, and the
// next peer takes the slot, with the ACL seeing the new peer (not the old
// one) there.
func TestForget(t *testing.T) {
	r := newTestRouter(t, func(c *Config) {
		// Clients of group eng may not reach conn-a's LAN over UDP.
		c.ACL = ACLConfig{Rules: []RuleConfig{{Action: "drop", From: Selector{Groups: []string{"eng"}}, To: Selector{Peers: []PeerID{"conn-a"}}, Proto: "udp"}}}
		c.Peers = append(c.Peers, PeerConfig{Name: "carol", Kind: KindClient, Groups: []string{"eng"}, Routes: []netip.Prefix{host(netip.MustParseAddr("198.18.1.4"))}})
	})
	if got := pass(t, r, udpPacket(t, bobV4, hostA4, 64, 100)); len(got) != 1 {
		t.Fatal("bob does not reach the LAN")
	}
	if !r.Forget("bob") {
		t.Fatal("Forget(bob) kept bob")
	}
	if _, ok := r.Stats().Peers["bob"]; ok {
		t.Error("bob still has counters after Forget")
	}
	if _, ok := r.Lookup(bobV4); ok {
		t.Error("bob's address still routed")
	}
	// A packet from bob's address is nobody's now.
	if got := pass(t, r, udpPacket(t, bobV4, hostA4, 64, 100)); len(got) != 0 {
		t.Error("a forgotten peer's address still forwards")
	}
	n := len(r.peers)

	// Churn: many clients come and go, one at a time; eng clients are
	// dropped by the ACL, the others pass.
	for i := range 500 {
		name := PeerID(fmt.Sprintf("c%d", i))
		addr := netip.AddrFrom4([4]byte{198, 18, 2 + byte(i/250), byte(i%250 + 1)})
		var groups []string
		if i%2 == 0 {
			groups = []string{"eng"}
		}
		if err := r.AddPeer(PeerConfig{Name: name, Kind: KindClient, Groups: groups, Routes: []netip.Prefix{host(addr)}}); err != nil {
			t.Fatal(err)
		}
		got := pass(t, r, udpPacket(t, addr, hostA4, 64, 100))
		if want := i%2 == 1; (len(got) == 1) != want {
			t.Fatalf("client %d (eng %v) forwarded %d packets: the ACL saw the slot's previous peer", i, i%2 == 0, len(got))
		}
		if !r.Forget(name) {
			t.Fatalf("Forget(%s) kept it", name)
		}
	}
	if len(r.peers) != n {
		t.Errorf("after 500 clients came and went the router holds %d peer slots, was %d", len(r.peers), n)
	}
	if s := r.Stats(); len(s.Peers) != 3 {
		t.Errorf("Stats lists %d peers, want alice, carol, conn-a: %v", len(s.Peers), s.Peers)
	}
	if r.Forget("nobody") {
		t.Error("Forget of an unknown name reported true")
	}
}

// A peer the ACL names, or the only member of a group it names, stays as
// a route-less placeholder.
func TestForgetKeepsWhatTheACLNames(t *testing.T) {
	r := newTestRouter(t, func(c *Config) {
		c.ACL = ACLConfig{Rules: []RuleConfig{
			{Action: "drop", From: Selector{Peers: []PeerID{"bob"}}},
			{Action: "drop", From: Selector{Groups: []string{"eng"}}, Proto: "tcp"},
		}}
	})
	for _, name := range []PeerID{"bob", "alice"} {
		if r.Forget(name) {
			t.Errorf("Forget(%s) dropped a peer the ACL needs", name)
		}
		if _, ok := r.Stats().Peers[name]; !ok {
			t.Errorf("%s gone from Stats", name)
		}
		if got := r.AllowedIPs(name); len(got) != 0 {
			t.Errorf("%s keeps routes %v", name, got)
		}
	}
	if _, ok := r.Lookup(aliceV4); ok {
		t.Error("alice's address still routed")
	}
}
