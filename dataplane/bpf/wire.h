// The UDP payloads of the edge's two protocols, parsed as the Go
// classifiers of dataplane/packet parse them (ClassifyWireGuard,
// ClassifyQUIC). One header for every program that reads them: the XDP
// pre-filter (dataplane/prefilter) and the reuseport steering programs
// (dataplane/steer), so that the tests that hold one to the Go classifiers
// hold all of them.
//
// The functions take the payload at p, the end of the data the program may
// read (end) and the payload's length from the UDP header (n): a field
// past end but within n passes the packet to user space (PASS_OTHER).

#ifndef ONRAMP_WIRE_H
#define ONRAMP_WIRE_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>

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

#define WG_INITIATION_LEN 148
#define WG_RESPONSE_LEN 92
#define WG_COOKIE_LEN 64
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
	// No multiple-of-16 rule: padding stops at the sender's MTU.
	if (n < WG_MIN_TRANSPORT)
		return WG_LENGTH;
	return PASS_WIREGUARD;
}

// quic_dcid is where a QUIC packet's destination connection ID is, as
// quic() found it.
struct quic_dcid {
	__u32 off, len;   // offset in the UDP payload and length
	int long_header;
	int initial;      // an Initial (version 1 or 2)
};

// quic applies ClassifyQUIC's checks in its order, then the Initial's
// minimum size; on a pass, *cid says where the destination connection ID
// is (a short header carries short_dcid_len bytes, the length of the IDs
// the edge issues). A field beyond the packet's linear data (never on this
// path, but the verifier asks) passes the packet to user space.
static __always_inline enum reason quic(__u8 *p, __u8 *end, __u32 n, __u32 short_dcid_len, struct quic_dcid *cid)
{
	if (n < 1)
		return QUIC_TRUNCATED;
	if (p + 1 > end)
		return PASS_OTHER;
	__u8 first = p[0];
	if (!(first & 0x80)) {
		if (!(first & 0x40))
			return QUIC_FIXED_BIT;
		if (n < 1 + short_dcid_len)
			return QUIC_TRUNCATED;
		cid->off = 1;
		cid->len = short_dcid_len;
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
	cid->off = 6;
	cid->len = dcid;
	cid->long_header = 1;
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
		cid->initial = 1;
	}
	return PASS_QUIC;
}

#endif
