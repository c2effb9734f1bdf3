package edge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

// udpListener is one ServeUDP socket and its flows.
type udpListener struct {
	pc  net.PacketConn
	upc *net.UDPConn // pc if it is one: its AddrPort methods do not allocate
	b   Binding

	mu     sync.Mutex
	byAddr map[netip.AddrPort]*udpFlow
}

func (l *udpListener) read(b []byte) (int, netip.AddrPort, error) {
	if l.upc != nil {
		return l.upc.ReadFromUDPAddrPort(b)
	}
	n, a, err := l.pc.ReadFrom(b)
	if err != nil {
		return n, netip.AddrPort{}, err
	}
	return n, addrPort(a), nil
}

func (l *udpListener) write(b []byte, to netip.AddrPort) error {
	var err error
	if l.upc != nil {
		_, err = l.upc.WriteToUDPAddrPort(b, to)
	} else {
		_, err = l.pc.WriteTo(b, net.UDPAddrFromAddrPort(to))
	}
	return err
}

// udpFlow is the flow of one user address on one ServeUDP socket. It sticks to
// one connection while that connection lives.
type udpFlow struct {
	id   uint32
	user netip.AddrPort
	l    *udpListener
	te   *tunnelEntry
	open []byte // the FlowOpen datagram, built once

	mu sync.Mutex
	lc *liveConn

	confirmed atomic.Bool  // traffic came back: FlowOpen no longer repeated
	last      atomic.Int64 // unix nanoseconds of the last datagram either way
	closed    atomic.Bool
}

func (f *udpFlow) touch() { f.last.Store(time.Now().UnixNano()) }

// ServeUDP proxies the datagrams arriving on pc to the tunnel of b. Each user
// address gets a flow, opened with a FlowOpen naming b.Service (repeated
// before each datagram until a datagram comes back) on one of the tunnel's
// connections, where it stays while that connection lives; the answers are
// sent back to the user from pc. A flow idle for UDPFlowIdle is closed.
// It returns nil when ctx is done, after closing pc and its flows, and an
// error if pc fails.
func (s *Server) ServeUDP(ctx context.Context, pc net.PacketConn, b Binding) error {
	if len(b.Service) > tunnel.MaxHostnameLen {
		return fmt.Errorf("edge: serve udp: service name of %d bytes (max %d)", len(b.Service), tunnel.MaxHostnameLen)
	}
	l := &udpListener{pc: pc, b: b, byAddr: make(map[netip.AddrPort]*udpFlow)}
	l.upc, _ = pc.(*net.UDPConn)
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	janitorDone := make(chan struct{})
	go func() {
		defer close(janitorDone)
		s.expireFlows(ctx, l)
	}()
	defer func() {
		stop()
		cancel()
		<-janitorDone
		l.mu.Lock()
		flows := make([]*udpFlow, 0, len(l.byAddr))
		for _, f := range l.byAddr {
			flows = append(flows, f)
		}
		l.mu.Unlock()
		for _, f := range flows {
			s.closeFlow(f, true)
		}
	}()
	buf := make([]byte, tunnel.DatagramHeaderLen+65535)
	for {
		n, from, err := l.read(buf[tunnel.DatagramHeaderLen:])
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("edge: serve udp: %w", err)
			}
			s.log.Debug("edge: udp read", "err", err)
			continue
		}
		l.mu.Lock()
		f := l.byAddr[from]
		l.mu.Unlock()
		if f == nil {
			if f = s.newFlow(l, from); f == nil {
				s.m.Dropped.Inc()
				continue
			}
		}
		s.sendToOrigin(f, buf, n)
	}
}

// newFlow creates the flow of user on l, or returns nil (logged and counted)
// if the tunnel is at its limit or offline.
func (s *Server) newFlow(l *udpListener, user netip.AddrPort) *udpFlow {
	te := s.tunnelNamed(l.b.Tunnel)
	if !s.acquire(te) {
		s.m.Error(errLimit)
		s.log.Debug("edge: udp flow refused: tunnel stream limit reached", "user", user, "tunnel", tunnelName(te.id), "limit", s.opts.MaxStreamsPerTunnel)
		return nil
	}
	lc := s.pick(te, nil)
	if lc == nil {
		s.release(te)
		s.m.Error(errTunnelOffline)
		s.log.Debug("edge: udp flow refused: tunnel offline", "user", user, "tunnel", tunnelName(te.id))
		return nil
	}
	id := s.nextFlow.Add(1)
	if id == 0 {
		id = s.nextFlow.Add(1)
	}
	remote := netip.AddrPortFrom(user.Addr().Unmap().WithZone(""), user.Port())
	open, err := tunnel.AppendFlowOpen(nil, id, &tunnel.FlowOpen{Hostname: l.b.Service, Remote: remote})
	if err != nil { // the service length was checked by ServeUDP
		s.release(te)
		return nil
	}
	f := &udpFlow{id: id, user: user, l: l, te: te, open: open, lc: lc}
	f.touch()
	s.flowMu.Lock()
	s.flows[id] = f
	s.flowMu.Unlock()
	l.mu.Lock()
	l.byAddr[user] = f
	l.mu.Unlock()
	s.m.FlowsOpen.Inc()
	s.m.FlowsTotal.Inc()
	s.log.Debug("edge: udp flow opened", "user", user, "tunnel", tunnelName(te.id), "flow", id)
	return f
}

// conn returns the flow's connection, moving the flow to another live one if
// it died or is draining; nil if the tunnel has none.
func (s *Server) flowConn(f *udpFlow) *liveConn {
	f.mu.Lock()
	defer f.mu.Unlock()
	if lc := f.lc; lc != nil && lc.conn.Context().Err() == nil && !lc.conn.Draining() {
		return lc
	}
	lc := s.pick(f.te, nil)
	if lc != nil {
		f.lc = lc
		f.confirmed.Store(false) // re-open on the new connection
	}
	return lc
}

// sendToOrigin sends the n-byte payload at buf[DatagramHeaderLen:] on the
// flow's connection, building the header in place.
func (s *Server) sendToOrigin(f *udpFlow, buf []byte, n int) {
	lc := s.flowConn(f)
	if lc == nil {
		s.m.Dropped.Inc()
		return
	}
	f.touch()
	if !f.confirmed.Load() {
		_ = lc.conn.SendDatagram(f.open)
	}
	// The payload already sits after the header room: frame it in place.
	d := tunnel.FrameDatagram(buf, f.id, n)
	if err := lc.conn.SendDatagram(d); err != nil {
		s.m.Dropped.Inc()
		s.log.Debug("edge: udp datagram dropped", "user", f.user, "flow", f.id, "err", err)
		return
	}
	s.m.DgToOrigin.Inc()
}

func (s *Server) lookupFlow(id uint32) *udpFlow {
	s.flowMu.RLock()
	f := s.flows[id]
	s.flowMu.RUnlock()
	return f
}

// receiveDatagrams handles the datagrams of lc until it ends.
func (s *Server) receiveDatagrams(lc *liveConn) {
	ctx := lc.conn.Context()
	buf := make([]byte, tunnel.MaxDatagramLen)
	var ctl [tunnel.DatagramHeaderLen + 1]byte
	for {
		n, err := lc.conn.ReceiveDatagram(ctx, buf)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !errors.Is(err, io.ErrShortBuffer) {
				s.log.Debug("edge: receive datagram", "err", err)
				time.Sleep(10 * time.Millisecond)
			}
			continue
		}
		typ, id, body, err := tunnel.ParseDatagram(buf[:n])
		if err != nil {
			s.m.Dropped.Inc()
			continue
		}
		f := s.lookupFlow(id)
		switch typ {
		case tunnel.DatagramData:
			if f == nil || f.closed.Load() {
				s.m.Dropped.Inc()
				_ = lc.conn.SendDatagram(tunnel.AppendFlowClose(ctl[:0], id, tunnel.FlowClosed))
				continue
			}
			f.confirmed.Store(true)
			f.touch()
			if err := f.l.write(body, f.user); err != nil {
				s.m.Dropped.Inc()
				continue
			}
			s.m.DgToPeer.Inc()
		case tunnel.DatagramFlowClose:
			reason, err := tunnel.ParseFlowClose(body)
			if err != nil || f == nil {
				continue
			}
			if reason == tunnel.FlowUnknown {
				// The connector lost the flow (restart, lost FlowOpen): open it again.
				f.confirmed.Store(false)
				_ = lc.conn.SendDatagram(f.open)
				continue
			}
			switch reason {
			case tunnel.FlowOriginUnreachable:
				s.m.Error(errOrigin)
			case tunnel.FlowNoRule, tunnel.FlowTooMany:
				s.m.Error(errRefused)
			}
			s.log.Info("edge: udp flow closed by connector", "user", f.user, "tunnel", tunnelName(f.te.id), "flow", id, "reason", flowReason(reason))
			s.closeFlow(f, false)
		}
	}
}

func flowReason(r tunnel.FlowCloseReason) string {
	switch r {
	case tunnel.FlowClosed:
		return "closed"
	case tunnel.FlowOriginUnreachable:
		return "origin unreachable"
	case tunnel.FlowNoRule:
		return "no ingress rule"
	case tunnel.FlowTooMany:
		return "too many flows"
	case tunnel.FlowUnknown:
		return "unknown flow"
	}
	return fmt.Sprintf("reason %d", uint8(r))
}

// closeFlow forgets f, telling the connector if notify is set.
func (s *Server) closeFlow(f *udpFlow, notify bool) {
	if !f.closed.CompareAndSwap(false, true) {
		return
	}
	s.flowMu.Lock()
	delete(s.flows, f.id)
	s.flowMu.Unlock()
	f.l.mu.Lock()
	if f.l.byAddr[f.user] == f {
		delete(f.l.byAddr, f.user)
	}
	f.l.mu.Unlock()
	s.release(f.te)
	s.m.FlowsOpen.Dec()
	if notify {
		f.mu.Lock()
		lc := f.lc
		f.mu.Unlock()
		if lc != nil {
			var ctl [tunnel.DatagramHeaderLen + 1]byte
			_ = lc.conn.SendDatagram(tunnel.AppendFlowClose(ctl[:0], f.id, tunnel.FlowClosed))
		}
	}
}

// expireFlows closes the flows of l idle for UDPFlowIdle, until ctx is done.
func (s *Server) expireFlows(ctx context.Context, l *udpListener) {
	idle := s.opts.UDPFlowIdle
	t := time.NewTicker(min(max(idle/4, 10*time.Millisecond), 5*time.Second))
	defer t.Stop()
	var expired []*udpFlow
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			expired = expired[:0]
			l.mu.Lock()
			for _, f := range l.byAddr {
				if now.UnixNano()-f.last.Load() >= int64(idle) {
					expired = append(expired, f)
				}
			}
			l.mu.Unlock()
			for _, f := range expired {
				s.log.Debug("edge: udp flow idle", "user", f.user, "flow", f.id)
				s.closeFlow(f, true)
			}
		}
	}
}
