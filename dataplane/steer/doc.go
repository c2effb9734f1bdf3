// Package steer holds the edge's SO_REUSEPORT steering programs: eBPF
// programs (sk_reuseport) that pick, among the sockets of one UDP port,
// the one a datagram belongs to, so that the edge can run one socket and
// one protocol engine per core without a flow ever changing socket.
//
//   - QUIC (quic.c, [ListenQUIC]): the tunnel listener runs one quic-go
//     Transport per socket. The edge issues connection IDs that name
//     their socket ([ConnIDGenerator], in the spirit of QUIC-LB's
//     plaintext IDs); the program steers a datagram by its destination
//     connection ID, so that a connector whose source address or port
//     changes stays on its Transport. Initials and IDs the edge did not
//     issue go by the kernel's hash of the 4-tuple. [QUICSocket] is the
//     decision in Go; the tests hold the program to it.
//   - WireGuard (wireguard.c, [NewWireGuard]): the device's receive loops
//     each have a socket, and one more socket takes handshake messages
//     and garbage, so that a flood of them queues there and never in
//     front of transport packets. A transport message goes to the loop
//     that owns its receiver index (a map the device fills as it makes
//     sessions), so a peer whose NAT rebinds its port stays on its loop;
//     an unknown index goes by the hash. [WireGuardSlot] is the decision
//     in Go.
//
// Each program's decision is compiled, from the same C, into an XDP
// harness that the tests run with BPF_PROG_TEST_RUN (an sk_reuseport
// program cannot be test-run). The packet parsing is the XDP
// pre-filter's (dataplane/bpf/wire.h). Without eBPF (no capability, an old
// kernel) the constructors return an error the caller logs before it
// falls back: to a single socket (QUIC), to the kernel's hash over the
// loops (WireGuard).
package steer
