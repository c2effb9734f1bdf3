//go:build ignore

// The steering of the edge's QUIC tunnel listener: one socket per core in
// a SO_REUSEPORT group, one quic-go Transport on each. The edge issues
// connection IDs that name the socket of their Transport (quic.go's
// ConnIDGenerator, in the spirit of QUIC-LB's plaintext IDs); this
// program reads a datagram's destination connection ID and hands it to
// that socket, wherever it comes from, so that a connector that changes
// its source port (NAT rebinding, migration) stays on its Transport.
// Initials, other long headers whose ID the client chose, IDs the edge did
// not issue and anything that is not QUIC go by the kernel's hash of the
// 4-tuple: the same socket for the same source.
//
// The decision (steer) is one function used by two programs: the
// sk_reuseport program the sockets run, and an XDP harness the tests run
// with BPF_PROG_TEST_RUN (an sk_reuseport program cannot be test-run) and
// hold to the Go model, QUICSocket. The QUIC parsing is the XDP
// pre-filter's (dataplane/bpf/wire.h).

#include <linux/bpf.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "wire.h"

char __license[] SEC("license") = "Dual MIT/GPL";

// As quic.go has them: the length of the IDs the edge issues, the marker
// in the top bits of their first byte, and the most sockets in a group
// (the index is their second byte).
#define CONN_ID_LEN 8
#define CONN_ID_MARKER 0x80
#define CONN_ID_MARKER_MASK 0xc0
#define MAX_SOCKETS 256

// How a datagram was steered, as quic.go numbers it.
enum how {
	BY_HASH = 0,
	BY_CONN_ID = 1,
};

// The sockets in the group, by index (set by the loader).
volatile const __u32 num_sockets = 0;

struct {
	__uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
	__uint(max_entries, MAX_SOCKETS);
	__type(key, __u32);
	__type(value, __u64);
} sockets SEC(".maps");

// Datagrams steered, at 2*index + how, and at 2*MAX_SOCKETS those the
// kernel would not hand to the chosen socket (it then picks by hash).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * MAX_SOCKETS + 1);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

// PEEK is how much of a datagram the programs copy to parse: the UDP
// header and the first 32 bytes of payload, which hold every field
// steer reads of a packet that carries an ID the edge issues (the
// longest: a long header's SCID length, at payload byte 14). A packet
// that needs more to parse has an ID of another length: it goes by hash
// either way.
#define PEEK 40

// The copy. Its value is larger than PEEK so that every read quic()
// makes (up to 6 + 255 + 1 bytes in) stays inside it for the verifier;
// quic() itself reads nothing past the end of what was copied. Copying
// is needed: a datagram's payload need not be in the linear data an
// sk_reuseport program sees directly (a UDP GSO packet over loopback
// carries it all in fragments).
struct scratch {
	__u8 b[8 + 512 + 8];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

// steer picks the socket, of n, for the UDP datagram whose first len
// bytes (at most PEEK, from its header) are at udp and whose 4-tuple
// hashes to hash, and says how in *how.
static __always_inline __u32 steer(__u8 *udp, __u32 len, __u32 hash, __u32 n, enum how *how)
{
	*how = BY_HASH;
	if (n == 0 || n > MAX_SOCKETS)
		return 0;
	if (len < sizeof(struct udphdr) || len > PEEK)
		return hash % n;
	__u8 *end = udp + len;
	__u32 ulen = bpf_ntohs(((struct udphdr *)udp)->len);
	if (ulen < sizeof(struct udphdr))
		return hash % n;
	__u8 *p = udp + sizeof(struct udphdr);
	struct quic_dcid cid = {};
	if (quic(p, end, ulen - sizeof(struct udphdr), CONN_ID_LEN, &cid) != PASS_QUIC || cid.initial || cid.len != CONN_ID_LEN)
		return hash % n;
	__u8 *c = p + (cid.off & 7); // 1 (short header) or 6 (long)
	if (c + 2 > end)
		return hash % n;
	if ((c[0] & CONN_ID_MARKER_MASK) != CONN_ID_MARKER || c[1] >= n)
		return hash % n;
	*how = BY_CONN_ID;
	return c[1];
}

static __always_inline void count(__u32 k)
{
	__u64 *c = bpf_map_lookup_elem(&counts, &k);
	if (c)
		*c += 1;
}

SEC("sk_reuseport")
int steer_quic(struct sk_reuseport_md *md)
{
	enum how how;
	__u32 k = 0;
	__u64 len = md->len; // 64 bits: no copy to zero-extend, whose bounds the verifier would not see
	__u8 *buf = bpf_map_lookup_elem(&scratch, &k);
	if (len > PEEK)
		len = PEEK;
	if (!buf || len < sizeof(struct udphdr))
		len = 0;
	else if (bpf_skb_load_bytes(md, 0, buf, len))
		len = 0; // by hash
	__u32 i = steer(buf, len, md->hash, num_sockets, &how);
	if (bpf_sk_select_reuseport(md, &sockets, &i, 0) == 0)
		count(2 * (i & (MAX_SOCKETS - 1)) + how);
	else
		count(2 * MAX_SOCKETS);
	return SK_PASS;
}

// The harness's frame: in place of an Ethernet header (XDP test runs want
// one), the 4-tuple hash and the number of sockets (host byte order) and
// padding to 16 bytes; then the UDP header and payload.
struct harness_hdr {
	__u32 hash;
	__u32 n;
	__u8 pad[8];
};

// harness returns steer's choice for the frame, copied as the
// sk_reuseport program copies a datagram: how << 16 | index.
SEC("xdp")
int steer_quic_harness(struct xdp_md *ctx)
{
	__u8 *data = (void *)(long)ctx->data;
	__u8 *end = (void *)(long)ctx->data_end;
	struct harness_hdr *h = (void *)data;
	if ((void *)(h + 1) > (void *)end)
		return 0xffff;
	enum how how;
	__u32 k = 0;
	__u64 len = end - (__u8 *)(h + 1);
	__u8 *buf = bpf_map_lookup_elem(&scratch, &k);
	if (len > PEEK)
		len = PEEK;
	if (!buf || len < sizeof(struct udphdr))
		len = 0;
	else if (bpf_xdp_load_bytes(ctx, sizeof(*h), buf, len))
		len = 0;
	__u32 i = steer(buf, len, h->hash, h->n, &how);
	return how << 16 | i;
}
