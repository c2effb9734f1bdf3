//go:build ignore

// The edge's XDP pre-filter: UDP datagrams to its WireGuard and QUIC ports
// that cannot be valid are dropped before they cost a socket wake-up.
// Everything else passes untouched. The rules are those of the Go
// classifiers in dataplane/packet (ClassifyWireGuard, ClassifyQUIC), which
// prefilter.go's Classify applies and the tests hold this program to.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

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

// Reasons, as prefilter.go numbers them.
enum reason {
	PASS_OTHER = 0, // not UDP to one of the ports (or not parsed: passed)
	PASS_WIREGUARD,
	PASS_QUIC,
	WG_TRUNCATED,
	WG_TYPE,
	WG_RESERVED,
	WG_LENGTH,
	QUIC_TRUNCATED,
	QUIC_FIXED_BIT,
	QUIC_CONN_ID_LENGTH,
	QUIC_SMALL_INITIAL,
	WG_SOURCE_RATE,
	WG_GLOBAL_RATE,
	QUIC_SOURCE_RATE,
	QUIC_GLOBAL_RATE,
	NUM_REASONS,
};

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

#define WG_INITIATION_LEN 148
#define WG_RESPONSE_LEN 92
#define WG_COOKIE_LEN 64
#define WG_TRANSPORT_HDR 16
#define WG_MIN_TRANSPORT 32
#define QUIC_MAX_CID 20
#define QUIC_MIN_INITIAL 1200

// wireguard applies ClassifyWireGuard's checks.
static __always_inline enum reason wireguard(__u8 *p, __u8 *end, __u32 n)
{
	if (n < 4)
		return WG_TRUNCATED;
	if (p + 4 > end)
		return PASS_OTHER;
	if (p[0] < 1 || p[0] > 4)
		return WG_TYPE;
	if (p[1] | p[2] | p[3])
		return WG_RESERVED;
	switch (p[0]) {
	case 1:
		return n == WG_INITIATION_LEN ? PASS_WIREGUARD : WG_LENGTH;
	case 2:
		return n == WG_RESPONSE_LEN ? PASS_WIREGUARD : WG_LENGTH;
	case 3:
		return n == WG_COOKIE_LEN ? PASS_WIREGUARD : WG_LENGTH;
	}
	if (n < WG_MIN_TRANSPORT || (n - WG_TRANSPORT_HDR) % 16)
		return WG_LENGTH;
	return PASS_WIREGUARD;
}

// quic applies ClassifyQUIC's checks in its order, then the Initial's
// minimum size. A field beyond the packet's linear data (never on this
// path, but the verifier asks) passes the packet to user space.
static __always_inline enum reason quic(__u8 *p, __u8 *end, __u32 n, int *initial)
{
	if (n < 1)
		return QUIC_TRUNCATED;
	if (p + 1 > end)
		return PASS_OTHER;
	__u8 first = p[0];
	if (!(first & 0x80)) {
		if (!(first & 0x40))
			return QUIC_FIXED_BIT;
		if (n < 1 + (__u32)quic_short_dcid_len)
			return QUIC_TRUNCATED;
		return PASS_QUIC;
	}
	if (n < 5)
		return QUIC_TRUNCATED;
	if (p + 5 > end)
		return PASS_OTHER;
	__u32 version = ((__u32)p[1] << 24) | ((__u32)p[2] << 16) | ((__u32)p[3] << 8) | p[4];
	int v1 = version == 0x00000001, v2 = version == 0x6b3343cf;
	if ((v1 || v2) && !(first & 0x40))
		return QUIC_FIXED_BIT;
	if (n < 6)
		return QUIC_TRUNCATED;
	if (p + 6 > end)
		return PASS_OTHER;
	__u32 dcid = p[5];
	if ((v1 || v2) && dcid > QUIC_MAX_CID)
		return QUIC_CONN_ID_LENGTH;
	__u32 off = 6 + dcid; // at most 261
	if (n < off + 1)
		return QUIC_TRUNCATED;
	__u8 *s = p + (off & 0x1ff);
	if (s + 1 > end)
		return PASS_OTHER;
	__u32 scid = s[0];
	if ((v1 || v2) && scid > QUIC_MAX_CID)
		return QUIC_CONN_ID_LENGTH;
	if (n < off + 1 + scid)
		return QUIC_TRUNCATED;
	// An Initial (type 0 in version 1, 1 in version 2) comes in a datagram
	// of at least 1200 bytes (RFC 9000 section 14.1, RFC 9369).
	__u8 type = (first >> 4) & 3;
	if ((v1 && type == 0) || (v2 && type == 1)) {
		if (n < QUIC_MIN_INITIAL)
			return QUIC_SMALL_INITIAL;
		*initial = 1;
	}
	return PASS_QUIC;
}

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
	int initial = 0;
	enum reason r = quic(p, end, n, &initial);
	if (r == PASS_QUIC && initial)
		r = limit(&src, r, QUIC_SOURCE_RATE, QUIC_GLOBAL_RATE);
	return count(r);
}
