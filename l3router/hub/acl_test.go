package hub

import (
	"net/netip"
	"testing"

	"github.com/onramp-net/onramp/dataplane/packet"
	"github.com/onramp-net/onramp/l3router"
)

// TestHubSetACL changes the policy of a running hub: a rule added stops
// the packets it rejects at once, a bad policy changes nothing, and the
// policy taken back lets them through again.
func TestHubSetACL(t *testing.T) {
	r := newRig(t, l3router.ACLConfig{})
	router4, _ := testPools.Router()
	r.roundTrip(t, r.alice, "before")

	deny := l3router.ACLConfig{BuiltinDeny: "reject", Rules: []l3router.RuleConfig{
		{Action: "reject", From: l3router.Selector{Groups: []string{"eng"}}, To: l3router.Selector{Prefixes: []netip.Prefix{netip.MustParsePrefix("198.18.30.7/32")}}},
		// Names that do not exist yet are taken, as at start.
		{Action: "allow", From: l3router.Selector{Peers: []l3router.PeerID{"carol"}}, To: l3router.Selector{Groups: []string{"contractors"}}},
	}}
	if err := r.hub.SetACL(deny); err != nil {
		t.Fatal(err)
	}
	rejected := func(tag string) {
		t.Helper()
		r.alice.send(t, udpPacket(t, r.alice.peer.Address4, r.host4, tag))
		r.alice.expect(t, "ICMP admin prohibited", func(p []byte) bool {
			if !isICMP(router4, r.alice.peer.Address4)(p) {
				return false
			}
			m, err := packet.ParseICMPv4(p[20:])
			return err == nil && m.Type() == packet.ICMPv4DestUnreachable && m.Code() == packet.ICMPv4CodeAdminProhibited
		})
	}
	rejected("after SetACL")
	r.roundTrip(t, r.bob, "bob, not in eng")

	bad := l3router.ACLConfig{Rules: []l3router.RuleConfig{{Action: "maybe"}}}
	if err := r.hub.SetACL(bad); err == nil {
		t.Fatal("SetACL took a rule with action maybe")
	}
	rejected("after a refused SetACL")

	if err := r.hub.SetACL(l3router.ACLConfig{}); err != nil {
		t.Fatal(err)
	}
	r.sendTo(t, r.alice, r.ca, r.alice.peer.Address4, r.host4, "allowed again")
	st, err := r.hub.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Peers) != 3 {
		t.Errorf("stats list %d peers; the placeholders of ACL names must not show", len(st.Peers))
	}
}
