// Package l3router is the edge's in-memory, batched IP router for the L3
// on-ramp.
//
// The edge's own WireGuard device (package wg) hands the router one
// decrypted packet at a time with [Router.Route], which checks it the same
// way and names the peer to encrypt it for; nothing is queued or copied
// (see route.go). The rest of this documentation is about the other
// interface, a tun.Device, which any wireguard-go device can use:
//
// A [Router] is the tun.Device of one wireguard-go device.Device. The device
// writes decrypted packets from its peers to [Router.Write]; the router
// validates each packet, looks up the peer that owns its source and its
// destination in a longest-prefix-match route table, applies the access policy ([ACLConfig]), decrements
// the TTL or hop limit, and queues the packet for [Router.Read], where the
// device picks it up, chooses the destination peer by its AllowedIPs and
// encrypts it. Packets the router cannot forward are counted by reason and
// dropped, or answered with an ICMP error that takes the same way back to the
// sender. The kernel is never involved.
//
// Peers are named ([PeerID]) clients, which own their virtual /32 and /128
// addresses, and connectors, which own the private subnets they advertise.
// The router's routes must equal the AllowedIPs configured on the
// wireguard-go device for the same peers (see [Router.AllowedIPs]): the device
// routes outbound packets by its AllowedIPs, and it drops inbound packets
// whose source is not in the sending peer's AllowedIPs, a check the router
// relies on.
//
// # Design notes
//
// Queue: Write classifies a batch in place, reserves as many slots as it
// needs in a bounded ring of preallocated MTU-sized buffers with one CAS,
// copies accepted packets (and writes ICMP errors) into them and publishes
// each slot; Read copies published slots out in order into the device's
// buffers. The ring is the router's only packet memory: nothing is
// allocated per packet or per batch. Each packet is copied twice (into the
// ring, out of it) because wireguard-go reuses the buffers of a Write as
// soon as it returns and owns the buffers of a Read.
//
// Backpressure: a full ring drops (DropQueueFull) rather than blocking the
// writer; see [Router.Write]. One sending peer may hold at most half of the
// ring (counted per slot, returned as the reader frees slots), so a single
// flooding peer leaves the other half to everyone else. This is a cap, not
// fair queuing: two flooders together can still fill the ring.
//
// Route table: the control plane keeps a list of (prefix, owner) and
// refuses overlaps between different owners; every change compiles an
// immutable table, one sorted slice per prefix length and family, longest
// length first, published with an atomic pointer. A lookup binary-searches
// the levels in turn. Subnet failover will hang several owners on one
// prefix (see routeTable.add).
//
// ACL: ordered rules, first match wins, then a default (the built-in
// policy: client to connector and connector to client allowed, the rest
// denied). Selectors name peers, groups, kinds or prefixes; they are
// compiled to bit sets over peer indices, so evaluation is a few bit tests
// and prefix checks per rule. Evaluation is stateless (no connection
// tracking).
package l3router
