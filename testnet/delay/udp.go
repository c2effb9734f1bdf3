package delay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
)

// UDP relays UDP datagrams with a delay. Each client address is a session
// with its own socket connected to the target, so the target sees one
// source port per client, and its answers go back to that client.
type UDP struct {
	pc     *net.UDPConn
	target netip.AddrPort
	opts   Options
	done   chan struct{}
	wg     sync.WaitGroup
	st     stats

	mu       sync.Mutex
	sessions map[netip.AddrPort]*udpSession
	closed   bool
}

// udpSession is one client address.
type udpSession struct {
	client netip.AddrPort
	uc     *net.UDPConn // connected to the target
	up     *line        // client -> target
	down   *line        // target -> client
}

// ListenUDP starts a relay listening on listen ("ip:port", port 0 picks
// one) that forwards to target ("ip:port"). Close it when done.
func ListenUDP(listen, target string, opts Options) (*UDP, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	la, err := checkAddr("listen address", listen, false)
	if err != nil {
		return nil, err
	}
	ta, err := checkAddr("target", target, true)
	if err != nil {
		return nil, err
	}
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(la))
	if err != nil {
		return nil, fmt.Errorf("delay: listen udp %s: %w", listen, err)
	}
	r := &UDP{pc: pc, target: ta, opts: opts, done: make(chan struct{}), sessions: make(map[netip.AddrPort]*udpSession)}
	r.wg.Go(r.readClients)
	return r, nil
}

// Addr is the address the relay listens on.
func (r *UDP) Addr() net.Addr { return r.pc.LocalAddr() }

// Stats returns the relay's counters so far.
func (r *UDP) Stats() Stats { return r.st.snapshot() }

// Close stops the relay: its sockets are closed and its goroutines have
// ended when Close returns. Datagrams still queued are dropped.
func (r *UDP) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	close(r.done)
	err := r.pc.Close()
	for _, s := range r.sessions {
		s.uc.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
	return err
}

// session returns the session of client, starting it if new; nil if the
// relay is closed, full, or the target cannot be dialled.
func (r *UDP) session(client netip.AddrPort) *udpSession {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.sessions[client]; s != nil || r.closed {
		return s
	}
	if len(r.sessions) >= r.opts.MaxSessions {
		return nil
	}
	uc, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(r.target))
	if err != nil {
		return nil
	}
	s := &udpSession{client: client, uc: uc, up: newLine(r.opts, &r.st), down: newLine(r.opts, &r.st)}
	r.sessions[client] = s
	r.wg.Go(func() { r.readTarget(s) })
	r.wg.Go(func() {
		s.up.run(r.done, func(c chunk) {
			r.count(s.uc.Write((*c.bp)[:c.n]))
			putDG(c.bp)
		})
	})
	r.wg.Go(func() {
		s.down.run(r.done, func(c chunk) {
			r.count(r.pc.WriteToUDPAddrPort((*c.bp)[:c.n], s.client))
			putDG(c.bp)
		})
	})
	return s
}

func (r *UDP) count(n int, err error) {
	if err != nil {
		r.st.dropped.Add(1)
		return
	}
	r.st.forwarded.Add(1)
	r.st.bytes.Add(uint64(n))
}

// enqueue copies b into a pooled buffer queued on l, or counts a drop.
func (r *UDP) enqueue(l *line, b []byte) {
	if len(b) > dgLarge {
		r.st.dropped.Add(1)
		return
	}
	bp := getDG(len(b))
	n := copy(*bp, b)
	if !l.offer(chunk{bp: bp, n: n}) {
		putDG(bp)
		r.st.dropped.Add(1)
	}
}

// readClients reads the clients' datagrams from the listening socket.
func (r *UDP) readClients() {
	buf := make([]byte, dgLarge+1)
	for {
		n, from, err := r.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		s := r.session(netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
		if s == nil {
			r.st.dropped.Add(1)
			continue
		}
		r.enqueue(s.up, buf[:n])
	}
}

// readTarget reads the target's answers to one session.
func (r *UDP) readTarget(s *udpSession) {
	buf := make([]byte, dgLarge+1)
	for {
		n, err := s.uc.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ECONNREFUSED from an ICMP error, and the like
		}
		r.enqueue(s.down, buf[:n])
	}
}
