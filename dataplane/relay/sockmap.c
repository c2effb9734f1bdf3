//go:build ignore

// The sockmap strategy of the relay (sockmap_linux.go): a stream verdict
// program on a SOCKHASH that moves each registered socket's incoming
// bytes to its peer's send side inside the kernel, and counts them.
//
// Each socket of a relayed pair is in socks under its cookie. ctl, which
// only user space writes, says where a socket's bytes go (the peer's
// cookie) and what user space knows of that direction; flows, which only
// this program writes once user space has created the entry, counts them.
//
// A redirected skb goes to the peer's psock queue, which the kernel sends
// from a work item and does not bound (nor charge to either socket): a
// peer that cannot send (its reader stalls) would let the queue grow
// without end while the source keeps acknowledging. So the program
// redirects only while that queue holds at most ctl.max bytes (what
// was redirected and written by user space, less what the peer's socket
// has taken: its tcp_sock read through BTF). Past that, and while any byte
// it passed is still not forwarded, it passes the skb to the socket's own
// receive queue (charged to it: its window closes), where user space reads
// it and writes it to the peer once the queue has drained: in order, and
// bounded. It also passes everything while the peer is not in socks (the
// pair is being registered or torn down): nothing is dropped.
//
// The verdict path hands the program whole skbs as TCP queued them; the
// program cuts from each the bytes already seen (fresh) and drops bare
// FINs, which the kernel's queue does not take.
//
// The program runs under the source socket's lock, so one flow's counters
// have one writer at a time; user space reads them with plain loads.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char __license[] SEC("license") = "Dual MIT/GPL";

// Sockets: two per pair, maxSockmapPairs in sockmap_linux.go.
#define MAX_SOCKETS 65536

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, MAX_SOCKETS);
	__type(key, __u64); // socket cookie
	__type(value, __u64);
} socks SEC(".maps");

// What user space sets for the direction from a socket.
struct ctl {
	__u64 peer;  // the peer's cookie
	__u64 base;  // the bytes the peer's socket had taken before the relay
	__u64 fwd;   // the passed bytes user space has written to the peer
	__u64 max;   // the bytes the peer's psock queue may hold
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SOCKETS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct ctl);
} ctls SEC(".maps");

// What the program counts for the direction from a socket.
struct flow {
	__u64 redirected; // bytes redirected to the peer
	__u64 passed;     // bytes passed to user space
	__u64 last;       // bpf_ktime_get_ns() of the last byte
	__u32 next;       // the TCP sequence number of the next new byte
	__u32 flags;      // FLOW_*
};

#define FLOW_NEXT 1   // next is set
#define FLOW_BROKEN 2 // a duplicate could not be cut: the stream is broken

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SOCKETS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct flow);
} flows SEC(".maps");

// The fields of the kernel's structures the program reads, relocated by
// CO-RE against the running kernel's BTF.
struct tcp_sock {
	__u64 bytes_acked;
	__u32 snd_una;
	__u32 write_seq;
	__u32 copied_seq;
} __attribute__((preserve_access_index));

struct sk_buff {
	char cb[48]; // TCP_SKB_CB: the sequence number first
} __attribute__((preserve_access_index));

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

// The most bpf_skb_adjust_room takes off an sk_skb at a time, and how many
// times the program calls it for one skb (512 KiB: a BIG TCP segment).
#define TRIM_STEP 0xfff
#define TRIM_STEPS 128

// trim takes n bytes off the front of skb.
static __always_inline int trim(struct __sk_buff *skb, __u32 n)
{
	for (int i = 0; i < TRIM_STEPS && n > 0; i++) {
		__u32 k = n < TRIM_STEP ? n : TRIM_STEP;
		if (bpf_skb_adjust_room(skb, -(__s32)k, 0, 0))
			return -1;
		n -= k;
	}
	return n ? -1 : 0;
}

// fresh cuts from skb the bytes the flow has seen already: TCP queues a
// retransmitted segment that overlaps what it received before as it is,
// and leaves its reader to skip the overlap by the sequence number, which
// the verdict path (tcp_read_skb) does not do. It returns the skb's new
// length, 0 if the skb holds nothing new, or -1 if it could not be cut
// (the flow is marked broken).
static __always_inline __s64 fresh(struct __sk_buff *skb, struct flow *f)
{
	struct sk_buff *kskb = bpf_cast_to_kern_ctx(skb);
	__u32 seq = *(__u32 *)&kskb->cb[0];
	__u32 len = skb->len;

	if (!(f->flags & FLOW_NEXT)) {
		// The first skb of the relay: it starts where the socket's
		// reader stopped before (it may have read part of it).
		__u32 next = seq;
		struct bpf_sock *sk = skb->sk;
		if (sk) {
			struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
			if (tp)
				next = tp->copied_seq;
		}
		if ((__s32)(next - seq) < 0 || next - seq > len)
			next = seq;
		f->next = next;
		f->flags |= FLOW_NEXT;
	}
	__s32 dup = (__s32)(f->next - seq);
	if (dup > 0) {
		if ((__u32)dup >= len)
			return 0;
		if (trim(skb, dup)) {
			f->flags |= FLOW_BROKEN;
			return -1;
		}
		len = skb->len;
		seq += dup;
	}
	f->next = seq + len;
	return len;
}

// taken returns the bytes a TCP socket has taken to send since it was
// made: those acknowledged and those still in its write queue (as user
// space computes it from TCP_INFO and SIOCOUTQ).
static __always_inline __u64 taken(struct tcp_sock *tp)
{
	return tp->bytes_acked + (__u32)(tp->write_seq - tp->snd_una);
}

// pass hands the skb to the socket's own receive queue, for user space.
static __always_inline int pass(struct flow *f, __u32 len)
{
	f->passed += len;
	return SK_PASS;
}

SEC("sk_skb/stream_verdict")
int relay_verdict(struct __sk_buff *skb)
{
	__u64 cookie = bpf_get_socket_cookie(skb);
	struct flow *f = bpf_map_lookup_elem(&flows, &cookie);
	struct ctl *c = bpf_map_lookup_elem(&ctls, &cookie);
	__u32 len = skb->len;

	if (!f || !c)
		return SK_PASS; // not a relayed socket: leave it to its reader
	if (len == 0)
		// A FIN without data: TCP has marked the end of the stream
		// already. Passed, it could land in the psock queue, whose
		// worker takes an empty skb for a broken pipe (EPIPE on the
		// socket): drop it.
		return SK_DROP;
	__s64 n = fresh(skb, f);
	if (n == 0)
		return SK_DROP;
	if (n < 0)
		return pass(f, skb->len); // user space resets the relay
	len = n;
	f->last = bpf_ktime_get_ns();
	if (f->passed != c->fwd || f->flags & FLOW_BROKEN)
		return pass(f, len); // behind passed bytes: keep the order

	__u64 peer_cookie = c->peer;
	struct bpf_sock *peer = bpf_map_lookup_elem(&socks, &peer_cookie);
	if (!peer)
		return pass(f, len);
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(peer);
	__s64 pending = 0;
	if (tp)
		pending = (__s64)(c->base + f->redirected + c->fwd - taken(tp));
	bpf_sk_release(peer);
	if (!tp || pending > (__s64)c->max)
		return pass(f, len);
	if (bpf_sk_redirect_hash(skb, &socks, &peer_cookie, 0) != SK_PASS)
		return pass(f, len); // the peer just left
	f->redirected += len;
	return SK_PASS;
}
