// Package l3router is the edge's in-memory, batched IP router for the L3
// on-ramp.
//
// A [Router] is the tun.Device of one wireguard-go device.Device. The device
// writes decrypted packets from its peers to [Router.Write]; the router
// validates each packet, looks up the peer that owns its source and its
// destination in a longest-prefix-match route table, applies the [ACL], decrements
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
package l3router
