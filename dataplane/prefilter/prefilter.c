//go:build ignore

// The edge's XDP pre-filter: UDP datagrams to its WireGuard and QUIC ports
// that cannot be valid are dropped before they cost a socket wake-up.
// Everything else passes untouched. The rules (dataplane/bpf/wire.h,
// shared with the steering programs) are those of the Go classifiers in
// dataplane/packet (ClassifyWireGuard, ClassifyQUIC), which prefilter.go's
// Classify applies and the tests hold this program to.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "wire.h"

char __license[] SEC("license") = "Dual MIT/GPL";

// Set by the loader (host byte order; 0: no such port).
volatile const __u16 wg_port = 0;
volatile const __u16 quic_port = 0;
// The length of the connection IDs the edge issues: a short header does
// not carry it.
volatile const __u8 quic_short_dcid_len = 0;

// Limits on handshake openers (WireGuard initiations, QUIC Initials), as
// GCRA in nanoseconds: the interval between openers and the burst
// allowance (burst times the interval). Per source, an IPv4 address or an
// IPv6 /64 (source_interval_ns 0: no limit); and for all sources the edge
// has not proven together (global_interval_ns 0: no ceiling).
volatile const __u64 source_interval_ns = 0;
volatile const __u64 source_burst_ns = 0;
volatile const __u64 global_interval_ns = 0;
volatile const __u64 global_burst_ns = 0;

// A source: an IPv4 address, or the /64 of an IPv6 address.
struct source {
	__u32 addr[2];
	__u32 v6;
};

// The sources' GCRA state (theoretical arrival time), least recently
// used first out: a flood of new sources evicts old entries, it cannot
// grow the map.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct source);
	__type(value, __u64);
} sources SEC(".maps");

// Sources the edge has proven (a completed handshake): above the global
// ceiling only they get through. The edge fills it.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct source);
	__type(value, __u8);
} proven SEC(".maps");

// The global GCRA state. CPUs update it without a lock: a race lets an
// opener or two more through, never fewer.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} global SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NUM_REASONS);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

// gcra takes a slot of the GCRA whose state is *tat at now: it reports
// whether the opener conforms, and moves *tat on if it does.
static __always_inline int gcra(__u64 *tat, __u64 now, __u64 interval, __u64 burst)
{
	__u64 t = *tat;
	if (t > now + burst)
		return 0;
	*tat = (t > now ? t : now) + interval;
	return 1;
}

// limit applies the limits to a handshake opener from src: its source's
// rate, then, unless the edge proved the source, the global ceiling.
static __always_inline enum reason limit(struct source *src, enum reason pass, enum reason source_rate, enum reason global_rate)
{
	__u64 now = bpf_ktime_get_ns();
	if (source_interval_ns) {
		__u64 *tat = bpf_map_lookup_elem(&sources, src);
		if (tat) {
			if (!gcra(tat, now, source_interval_ns, source_burst_ns))
				return source_rate;
		} else {
			__u64 t = now + source_interval_ns;
			bpf_map_update_elem(&sources, src, &t, BPF_ANY);
		}
	}
	if (global_interval_ns && !bpf_map_lookup_elem(&proven, src)) {
		__u32 k = 0;
		__u64 *tat = bpf_map_lookup_elem(&global, &k);
		if (tat && !gcra(tat, now, global_interval_ns, global_burst_ns))
			return global_rate;
	}
	return pass;
}

static __always_inline int count(enum reason r)
{
	__u32 k = r;
	__u64 *c = bpf_map_lookup_elem(&counts, &k);
	if (c)
		*c += 1;
	return r >= WG_TRUNCATED ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int prefilter(struct xdp_md *ctx)
{
	__u8 *data = (void *)(long)ctx->data;
	__u8 *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = (void *)data;
	if ((void *)(eth + 1) > (void *)end)
		return count(PASS_OTHER);
	struct udphdr *udp;
	__u32 ip_payload;
	struct source src = {};
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > (void *)end)
			return count(PASS_OTHER);
		if (ip->protocol != IPPROTO_UDP || ip->ihl < 5 || (ip->frag_off & bpf_htons(0x3fff)))
			return count(PASS_OTHER); // fragments are the kernel's to reassemble
		udp = (void *)((__u8 *)ip + ip->ihl * 4);
		src.addr[0] = ip->saddr;
		ip_payload = bpf_ntohs(ip->tot_len);
		if (ip_payload < ip->ihl * 4)
			return count(PASS_OTHER);
		ip_payload -= ip->ihl * 4;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > (void *)end)
			return count(PASS_OTHER);
		if (ip6->nexthdr != IPPROTO_UDP)
			return count(PASS_OTHER); // extension headers: user space decides
		udp = (void *)(ip6 + 1);
		src.addr[0] = ip6->saddr.in6_u.u6_addr32[0];
		src.addr[1] = ip6->saddr.in6_u.u6_addr32[1];
		src.v6 = 1;
		ip_payload = bpf_ntohs(ip6->payload_len);
	} else {
		return count(PASS_OTHER);
	}
	if ((void *)(udp + 1) > (void *)end)
		return count(PASS_OTHER);
	__u16 dport = bpf_ntohs(udp->dest);
	if (dport == 0 || (dport != wg_port && dport != quic_port))
		return count(PASS_OTHER);
	__u32 ulen = bpf_ntohs(udp->len);
	if (ulen < sizeof(*udp) || ulen > ip_payload)
		return count(PASS_OTHER); // a broken UDP length: the kernel drops it
	__u32 n = ulen - sizeof(*udp);
	__u8 *p = (__u8 *)(udp + 1);
	if (dport == wg_port) {
		enum reason r = wireguard(p, end, n);
		if (r == PASS_WIREGUARD && p + 1 <= end && p[0] == 1) // an initiation
			r = limit(&src, r, WG_SOURCE_RATE, WG_GLOBAL_RATE);
		return count(r);
	}
	struct quic_dcid cid = {};
	enum reason r = quic(p, end, n, quic_short_dcid_len, &cid);
	if (r == PASS_QUIC && cid.initial)
		r = limit(&src, r, QUIC_SOURCE_RATE, QUIC_GLOBAL_RATE);
	return count(r);
}
