//go:build ignore

// Steering for the edge's WireGuard sockets: a SO_REUSEPORT program over
// the device's socket group of each address family. The group holds a
// handshake socket (slot 0) and one socket per receive loop (slots 1 to
// loops). Handshake messages, and what the pre-filter's rules would drop,
// go to the handshake socket, so that a flood of them queues there and
// never in front of transport packets; a transport message goes to the
// loop that owns its receiver index (the device fills the sessions map as
// it makes sessions), so a peer stays on its loop when its NAT rebinds its
// port; a transport message with an index the map does not name goes by
// the kernel's hash of the 4-tuple.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "wire.h"

char __license[] SEC("license") = "Dual MIT/GPL";

#define MAX_LOOPS 64
#define SLOTS (MAX_LOOPS + 1)      // the handshake socket and the loops'
#define STEER_HASH 0xffffffff      // wg_slot: no slot, pick by hash

// The number of loop sockets per family, set by the loader.
volatile const __u32 loops = 1;

// The sockets: IPv4's at slot, IPv6's at SLOTS + slot.
struct {
	__uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
	__uint(max_entries, 2 * SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} sockets SEC(".maps");

// Receiver index -> loop slot (1 to loops), filled by the device.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, __u32);
} sessions SEC(".maps");

// Datagrams steered to each slot (as the sockets map numbers them), and
// at index 2 * SLOTS those whose socket could not be selected (the kernel
// hashed them).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * SLOTS + 1);
	__type(key, __u32);
	__type(value, __u64);
} steered SEC(".maps");

// wg_slot decides where a datagram to the WireGuard port goes: its UDP
// payload at p (n bytes, readable up to end). It returns the slot, or
// STEER_HASH for the loop the hash picks.
static __always_inline __u32 wg_slot(__u8 *p, __u8 *end, __u32 n)
{
	enum reason r = wireguard(p, end, n);
	if (r >= WG_TRUNCATED)
		return 0; // the pre-filter would drop it: the handshake loop counts it
	if (r != PASS_WIREGUARD || p + 8 > end)
		return STEER_HASH;
	if (p[0] != 4)
		return 0; // initiation, response, cookie reply
	__u32 index = (__u32)p[4] | ((__u32)p[5] << 8) | ((__u32)p[6] << 16) | ((__u32)p[7] << 24);
	__u32 *slot = bpf_map_lookup_elem(&sessions, &index);
	if (slot && *slot >= 1 && *slot <= loops)
		return *slot;
	return STEER_HASH;
}

static __always_inline void count(__u32 k)
{
	__u64 *c = bpf_map_lookup_elem(&steered, &k);
	if (c)
		*c += 1;
}

SEC("sk_reuseport")
int steer_wireguard(struct sk_reuseport_md *md)
{
	// A copy of the UDP header and the payload's first 8 bytes (type,
	// reserved, receiver index): the payload need not be in the linear
	// data the program sees directly (a UDP GSO packet over loopback
	// carries it all in fragments).
	__u8 buf[sizeof(struct udphdr) + 8];
	__u32 slot = STEER_HASH;
	__u64 take = md->len; // 64 bits: bounds the verifier can follow
	if (take > sizeof(buf))
		take = sizeof(buf);
	if (take >= sizeof(struct udphdr) && bpf_skb_load_bytes(md, 0, buf, take) == 0)
		slot = wg_slot(buf + sizeof(struct udphdr), buf + take, md->len - sizeof(struct udphdr));
	if (slot == STEER_HASH)
		slot = 1 + md->hash % (loops ? loops : 1);
	__u32 key = slot + (md->eth_protocol == bpf_htons(ETH_P_IPV6) ? SLOTS : 0);
	if (bpf_sk_select_reuseport(md, &sockets, &key, 0) == 0)
		count(key);
	else
		count(2 * SLOTS);
	return SK_PASS;
}

// The test harness: wg_slot over a UDP payload given as an XDP frame
// behind ETH_HLEN bytes of padding (a test run wants a frame at least that
// long), with the decision written to result.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} result SEC(".maps");

SEC("xdp")
int wg_slot_harness(struct xdp_md *ctx)
{
	// The same copy as steer_wireguard's: the payload's first 8 bytes.
	__u8 buf[8];
	__u32 k = 0, slot = 0;
	__u32 len = ctx->data_end - ctx->data;
	if (len < ETH_HLEN)
		return XDP_ABORTED;
	__u32 n = len - ETH_HLEN;
	__u64 take = n;
	if (take > sizeof(buf))
		take = sizeof(buf);
	if (take == 0 || bpf_xdp_load_bytes(ctx, ETH_HLEN, buf, take) == 0)
		slot = wg_slot(buf, buf + take, n);
	bpf_map_update_elem(&result, &k, &slot, BPF_ANY);
	return XDP_PASS;
}
