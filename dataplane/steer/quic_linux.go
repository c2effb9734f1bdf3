package steer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/onramp-net/onramp/dataplane/internal/closing"
	"golang.org/x/sys/unix"
)

// QUIC is a SO_REUSEPORT group of UDP sockets on one address with the
// QUIC steering program attached: a datagram carrying a connection ID
// that [ConnIDGenerator] i issued reaches socket i.
type QUIC struct {
	conns []*net.UDPConn
	objs  quicReuseport
	guard closing.Guard // the maps are not read while, or after, Close releases them
}

// quicReuseport is what ListenQUIC loads of quic.c: the sk_reuseport
// program and its maps, not the test harness.
type quicReuseport struct {
	Prog    *ebpf.Program `ebpf:"steer_quic"`
	Sockets *ebpf.Map     `ebpf:"sockets"`
	Counts  *ebpf.Map     `ebpf:"counts"`
}

func (o *quicReuseport) Close() error {
	return errors.Join(o.Prog.Close(), o.Sockets.Close(), o.Counts.Close())
}

// ListenQUIC opens n UDP sockets (network "udp", "udp4" or "udp6") on addr
// in one SO_REUSEPORT group and attaches the steering program to it. A
// port of 0 picks one for all of them. Loading the program needs root,
// or CAP_BPF, CAP_NET_ADMIN (the socket map) and CAP_PERFMON (the parser
// compares pointers); without them the error says
// so and no socket is left open: the caller falls back to one socket.
func ListenQUIC(network, addr string, n int) (*QUIC, error) {
	if n < 1 || n > MaxSockets {
		return nil, fmt.Errorf("steer: %d sockets: want 1 to %d", n, MaxSockets)
	}
	q := &QUIC{}
	spec, err := loadQuic()
	if err != nil {
		return nil, fmt.Errorf("steer: %w", err)
	}
	if err := spec.Variables["num_sockets"].Set(uint32(n)); err != nil {
		return nil, fmt.Errorf("steer: set num_sockets: %w", err)
	}
	if err := spec.LoadAndAssign(&q.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("steer: the kernel's verifier refused the program: %+v", ve)
		}
		return nil, fmt.Errorf("steer: load the sk_reuseport program (needs root, or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON): %w", err)
	}
	fail := func(err error) (*QUIC, error) {
		q.Close()
		return nil, err
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	for i := range n {
		pc, err := lc.ListenPacket(context.Background(), network, addr)
		if err != nil {
			return fail(fmt.Errorf("steer: listen %s %s (socket %d): %w", network, addr, i, err))
		}
		c := pc.(*net.UDPConn)
		q.conns = append(q.conns, c)
		if i == 0 {
			// The others join the port the first one got.
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return fail(fmt.Errorf("steer: %w", err))
			}
			addr = net.JoinHostPort(host, strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port))
		}
		if err := withFD(c, func(fd int) error { return q.objs.Sockets.Put(uint32(i), uint64(fd)) }); err != nil {
			return fail(fmt.Errorf("steer: socket %d into the map: %w", i, err))
		}
	}
	err = withFD(q.conns[0], func(fd int) error {
		return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_EBPF, q.objs.Prog.FD())
	})
	if err != nil {
		return fail(fmt.Errorf("steer: attach the program to the group (SO_ATTACH_REUSEPORT_EBPF): %w", err))
	}
	return q, nil
}

func withFD(c *net.UDPConn, f func(fd int) error) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// Conns returns the sockets; datagrams with IDs of ConnIDGenerator(i)
// reach Conns()[i]. They stay q's: Close closes them.
func (q *QUIC) Conns() []*net.UDPConn { return q.conns }

// ConnIDGenerator returns the connection ID generator of socket i, for
// the quic.Transport on it.
func (q *QUIC) ConnIDGenerator(i int) *ConnIDGenerator {
	return &ConnIDGenerator{index: uint8(i)}
}

// Count is what the program did with the datagrams of one socket.
type Count struct {
	ConnID uint64 // steered to it by connection ID
	Hash   uint64 // by the 4-tuple hash
}

// Total is c.ConnID + c.Hash.
func (c Count) Total() uint64 { return c.ConnID + c.Hash }

// Counts returns the datagrams steered to each socket, summed over the
// CPUs, and those the kernel refused the chosen socket for (it then
// picked one by its own hash).
func (q *QUIC) Counts() (per []Count, refused uint64, err error) {
	if !q.guard.Use() {
		return nil, 0, fmt.Errorf("steer: read the counters: %w", os.ErrClosed)
	}
	defer q.guard.Done()
	sum := func(k uint32) (uint64, error) {
		var vs []uint64
		if err := q.objs.Counts.Lookup(k, &vs); err != nil {
			return 0, fmt.Errorf("steer: read the counters: %w", err)
		}
		var t uint64
		for _, v := range vs {
			t += v
		}
		return t, nil
	}
	per = make([]Count, len(q.conns))
	for i := range per {
		if per[i].Hash, err = sum(uint32(2*i) + uint32(ByHash)); err != nil {
			return nil, 0, err
		}
		if per[i].ConnID, err = sum(uint32(2*i) + uint32(ByConnID)); err != nil {
			return nil, 0, err
		}
	}
	refused, err = sum(2 * MaxSockets)
	return per, refused, err
}

// Close closes the sockets and releases the program (the kernel detaches
// it with the last socket of the group).
func (q *QUIC) Close() error {
	return q.guard.Close(func() error {
		var errs []error
		for _, c := range q.conns {
			errs = append(errs, c.Close())
		}
		if q.objs.Prog != nil {
			errs = append(errs, q.objs.Close())
		}
		return errors.Join(errs...)
	})
}

// harness is quic.c's XDP harness, loaded by the tests.
type harness struct {
	Prog *ebpf.Program `ebpf:"steer_quic_harness"`
}

func loadHarness() (*harness, error) {
	spec, err := loadQuic()
	if err != nil {
		return nil, fmt.Errorf("steer: %w", err)
	}
	var h harness
	if err := spec.LoadAndAssign(&h, nil); err != nil {
		return nil, fmt.Errorf("steer: load the XDP harness (needs root, or CAP_BPF and CAP_PERFMON): %w", err)
	}
	return &h, nil
}

// run runs the harness on a UDP datagram (header and payload) with the
// 4-tuple hash and n sockets: the socket steer picks, and how.
func (h *harness) run(udp []byte, hash uint32, n int) (int, How, error) {
	frame := make([]byte, 16, 16+len(udp)) // quic.c's struct harness_hdr
	binary.NativeEndian.PutUint32(frame[0:4], hash)
	binary.NativeEndian.PutUint32(frame[4:8], uint32(n))
	frame = append(frame, udp...)
	ret, err := h.Prog.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		return 0, 0, fmt.Errorf("steer: test run: %w", err)
	}
	return int(ret & 0xffff), How(ret >> 16), nil
}
