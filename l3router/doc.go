// Package l3router is the edge's in-memory IP router for the L3 on-ramp.
//
// The edge's own WireGuard device (package wg) hands the router one
// decrypted packet at a time with [Router.Route], saying which peer sent
// it; the router validates the packet, checks that its source belongs to
// that peer, looks up the peer that owns its destination in a
// longest-prefix-match route table, applies the access policy
// ([ACLConfig]), decrements the TTL or hop limit in place and names the
// peer to encrypt it for (the value the device attached to it with
// [Router.Attach]). Packets the router cannot forward are counted by
// reason and dropped, or answered with an ICMP error ([Router.PutReply])
// that the device sends back to the sender. Nothing is queued, copied or
// allocated per packet, and the kernel is never involved.
//
// Peers are named ([PeerID]) clients, which own their virtual /32 and /128
// addresses, and connectors, which own the private subnets they advertise.
// A peer's routes are its WireGuard allowed IPs both ways: the sources it
// may send from and the destinations sent to it (see [Router.AllowedIPs]).
//
// # Design notes
//
// Route table: the control plane keeps a list of (prefix, owner) and
// refuses overlaps between different owners; every change compiles an
// immutable table, one sorted slice per prefix length and family, longest
// length first, published with an atomic pointer. A lookup binary-searches
// the levels in turn.
//
// Subnet failover: connectors may own exactly the same prefix (no other
// overlap). The compiled table has one entry for it, its active owner,
// where packets to it go, with the other (standby) owners beside it; a
// packet from the prefix is accepted from any of its owners (the source
// check looks at the standby owners only when the active one is not the
// sender). [Router.SetActive] moves a prefix to another owner by
// publishing a new table, as any route change does; the per-packet path
// is as it was for a prefix of one owner. Which owner is active is the
// caller's choice (package hub decides by the connectors' liveness).
//
// ACL: ordered rules, first match wins, then a default (the built-in
// policy: client to connector and connector to client allowed, the rest
// denied). Selectors name peers, groups, kinds or prefixes; they are
// compiled to bit sets over peer indices, so evaluation is a few bit tests
// and prefix checks per rule. Evaluation is stateless (no connection
// tracking).
//
// Counters are atomic per peer; the device's loops route at once, each
// packet through the data state (route table and ACL) it loads, so a
// change applies from the next packet on.
package l3router
