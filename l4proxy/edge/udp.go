package edge

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

// UDP flows: see "UDP flows" in the package doc for who may name a flow
// and what bounds a binding.

// udpListener is one ServeUDP socket and its flows.
type udpListener struct {
	pc      net.PacketConn
	upc     *net.UDPConn   // pc if it is one: its AddrPort methods do not allocate
	b       *BindingVar    // the tunnel and service of new flows
	sources *prefixLimiter // new flows per source prefix (at the rate of Limits.UDPNewFlowsPerSource)

	mu     sync.Mutex
	byAddr map[netip.AddrPort]*udpFlow
}

func (s *Server) newUDPListener(pc net.PacketConn, b *BindingVar) *udpListener {
	l := &udpListener{pc: pc, b: b, byAddr: make(map[netip.AddrPort]*udpFlow),
		sources: newPrefixLimiter(s.cur().UDPNewFlowsPerSource)}
	l.upc, _ = pc.(*net.UDPConn)
	return l
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
// one connection while that connection lives, and takes a new ID when it
// moves to another.
type udpFlow struct {
	user    netip.AddrPort
	l       *udpListener
	te      *tunnelEntry
	tunnel  string // the name the binding gave te by when the flow opened
	service string // the binding's service then: the flow's FlowOpen names it

	mu   sync.Mutex
	lc   *liveConn // the connection carrying the flow: its table holds the flow under id
	id   uint32
	open []byte // the FlowOpen datagram for id

	confirmed atomic.Bool  // traffic came back on lc: FlowOpen no longer repeated
	answered  atomic.Bool  // the origin answered once: UDPFlowIdle instead of UDPUnrepliedIdle
	last      atomic.Int64 // unix nanoseconds of the last datagram either way
	closed    atomic.Bool
}

func (f *udpFlow) touch() { f.last.Store(time.Now().UnixNano()) }

// newFlowRNG returns the generator of flow IDs: ChaCha8, a cryptographic
// generator, seeded from crypto/rand, so that the IDs a connector sees of
// its own flows tell nothing of the others'. It costs a few nanoseconds
// per flow, nothing per datagram.
func newFlowRNG() *rand.ChaCha8 {
	var seed [32]byte
	_, _ = crand.Read(seed[:]) // never fails (it crashes the program if the system cannot give randomness)
	return rand.NewChaCha8(seed)
}

// drawFlowID returns a random non-zero ID that no live flow has. s.flowMu
// must be held for writing.
func (s *Server) drawFlowID() uint32 {
	for {
		if id := uint32(s.flowRNG.Uint64()); id != 0 && s.flowIDs[id] == nil {
			return id
		}
	}
}

// attach puts f on lc under a new ID: out of its old connection's table (if
// any), into lc's and the index. The new connection's connector does not
// know the flow yet: FlowOpen is repeated until it answers. f.mu must be held.
func (s *Server) attach(f *udpFlow, lc *liveConn) {
	old, oldID := f.lc, f.id
	s.flowMu.Lock()
	if old != nil && s.flowIDs[oldID] == f {
		delete(s.flowIDs, oldID)
	}
	id := s.drawFlowID()
	s.flowIDs[id] = f
	s.flowMu.Unlock()
	if old != nil {
		old.removeFlow(oldID, f)
	}
	lc.addFlow(id, f)
	// ServeUDP checked the service's length: this cannot fail.
	remote := netip.AddrPortFrom(f.user.Addr().Unmap().WithZone(""), f.user.Port())
	f.open, _ = tunnel.AppendFlowOpen(nil, id, &tunnel.FlowOpen{Hostname: f.service, Remote: remote})
	f.lc, f.id = lc, id
	f.confirmed.Store(false)
}

// detach takes f out of its connection's table and the index. f.mu must be held.
func (s *Server) detach(f *udpFlow) {
	s.flowMu.Lock()
	if s.flowIDs[f.id] == f {
		delete(s.flowIDs, f.id)
	}
	s.flowMu.Unlock()
	f.lc.removeFlow(f.id, f)
}

// flow returns the flow lc carries under id, or nil: the only lookup of a
// flow named by a connector.
func (lc *liveConn) flow(id uint32) *udpFlow {
	lc.flowMu.Lock()
	f := lc.flows[id]
	lc.flowMu.Unlock()
	return f
}

func (lc *liveConn) addFlow(id uint32, f *udpFlow) {
	lc.flowMu.Lock()
	if lc.flows == nil {
		lc.flows = make(map[uint32]*udpFlow)
	}
	lc.flows[id] = f
	lc.flowMu.Unlock()
}

func (lc *liveConn) removeFlow(id uint32, f *udpFlow) {
	lc.flowMu.Lock()
	if lc.flows[id] == f {
		delete(lc.flows, id)
	}
	lc.flowMu.Unlock()
}

// ServeUDP proxies the datagrams arriving on pc to the tunnel of b. Each user
// address gets a flow, opened with a FlowOpen naming b.Service (repeated
// before each datagram until a datagram comes back) on one of the tunnel's
// connections, where it stays while that connection lives; the answers are
// sent back to the user from pc, and nothing else is. New flows are limited
// by MaxUDPFlowsPerTunnel, UDPNewFlowsPerSource and UDPNewFlowsPerTunnel; a
// flow is closed when idle for UDPFlowIdle, or UDPUnrepliedIdle if the
// origin never answered it. It returns nil when ctx is done, after closing
// pc and its flows, and an error if pc fails. Closing pc (a binding
// removed) ends its flows too: their answers have no other way back.
func (s *Server) ServeUDP(ctx context.Context, pc net.PacketConn, b Binding) error {
	v, err := NewBindingVar(b)
	if err != nil {
		return fmt.Errorf("edge: serve udp: %w", err)
	}
	return s.ServeUDPVar(ctx, pc, v)
}

// ServeUDPVar is ServeUDP with a binding that may change while it serves:
// each flow opens to the binding current then, and stays on it. It returns
// nil when pc is closed, after closing its flows.
func (s *Server) ServeUDPVar(ctx context.Context, pc net.PacketConn, b *BindingVar) error {
	l := s.newUDPListener(pc, b)
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
				return nil // closed by the caller: the binding is gone
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

// newFlow creates the flow of user on l, or returns nil (counted, and
// logged at most once a second per reason) if a limit refuses it or the
// tunnel is offline. A refusal does not allocate: a spoofed flood is
// refused at the cost of a hash and a few atomic operations per datagram.
func (s *Server) newFlow(l *udpListener, user netip.AddrPort) *udpFlow {
	b := l.b.p.Load()
	te := s.tunnelNamed(b.Tunnel)
	lim := s.cur()
	now := time.Now().UnixNano()
	// The source's own prefix first: a flood from one prefix then spends
	// none of the tunnel's rate.
	if !l.sources.bucket(user.Addr()).allow(now, lim.udpSourceRate) {
		s.refuseFlow(refusedSourceRate, te, user, now)
		return nil
	}
	if !te.udpNewRate.allow(now, lim.udpTunnelRate) {
		s.refuseFlow(refusedTunnelRate, te, user, now)
		return nil
	}
	if te.udpFlows.Add(1) > int64(lim.MaxUDPFlowsPerTunnel) {
		te.udpFlows.Add(-1)
		s.refuseFlow(refusedFlowLimit, te, user, now)
		return nil
	}
	lc := s.pick(te, nil)
	if lc == nil {
		te.udpFlows.Add(-1)
		s.m.Error(errTunnelOffline)
		if s.log.Enabled(context.Background(), slog.LevelDebug) {
			s.log.Debug("edge: udp flow refused: tunnel offline", "user", user, "tunnel", tunnelName(te.id))
		}
		return nil
	}
	f := &udpFlow{user: user, l: l, te: te, tunnel: b.Tunnel, service: b.Service}
	f.last.Store(now)
	f.mu.Lock()
	s.attach(f, lc)
	id := f.id
	f.mu.Unlock()
	l.mu.Lock()
	l.byAddr[user] = f
	l.mu.Unlock()
	s.m.FlowsOpen.Inc()
	s.m.FlowsTotal.Inc()
	s.log.Debug("edge: udp flow opened", "user", user, "tunnel", tunnelName(te.id), "flow", id)
	return f
}

// refuseFlow counts a new flow refused for reason and logs it if the
// reason's log line is due, naming the limit.
func (s *Server) refuseFlow(reason int, te *tunnelEntry, user netip.AddrPort, now int64) {
	s.udp.refused[reason].Inc()
	ok, held := s.logUDPRefused[reason].allow(now)
	if !ok {
		return
	}
	var msg string
	lim := s.cur()
	switch reason {
	case refusedSourceRate:
		msg = fmt.Sprintf("limits.udpNewFlowsPerSource (%d/s) reached for %s", lim.UDPNewFlowsPerSource, sourcePrefix(user.Addr()))
	case refusedTunnelRate:
		msg = fmt.Sprintf("limits.udpNewFlowsPerTunnel (%d/s) reached for tunnel %s", lim.UDPNewFlowsPerTunnel, tunnelName(te.id))
	case refusedFlowLimit:
		msg = fmt.Sprintf("limits.maxUDPFlowsPerTunnel (%d) reached for tunnel %s", lim.MaxUDPFlowsPerTunnel, tunnelName(te.id))
	}
	s.log.Warn("edge: new udp flow refused: "+msg, "user", netip.AddrPortFrom(user.Addr().Unmap(), user.Port()), "tunnel", tunnelName(te.id),
		"refused_since_last_line", held)
}

// flowConn returns the flow's connection and its ID there, moving the flow
// to another live connection (under a new ID) if its own died or is
// draining; nil if the tunnel has none.
func (s *Server) flowConn(f *udpFlow) (lc *liveConn, id uint32, open []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.lc
	if old.conn.Context().Err() == nil && !old.conn.Draining() {
		return old, f.id, f.open
	}
	if f.closed.Load() {
		return nil, 0, nil
	}
	lc = s.pick(f.te, nil)
	if lc == nil {
		return nil, 0, nil
	}
	oldID := f.id
	s.attach(f, lc)
	if old.conn.Context().Err() == nil {
		// Draining: end the flow there too, so that its connector closes
		// the origin socket now rather than when it idles out.
		var ctl [tunnel.DatagramHeaderLen + 1]byte
		_ = old.conn.SendDatagram(tunnel.AppendFlowClose(ctl[:0], oldID, tunnel.FlowClosed))
	}
	return lc, f.id, f.open
}

// sendToOrigin sends the n-byte payload at buf[DatagramHeaderLen:] on the
// flow's connection, building the header in place.
func (s *Server) sendToOrigin(f *udpFlow, buf []byte, n int) {
	lc, id, open := s.flowConn(f)
	if lc == nil {
		s.m.Dropped.Inc()
		if b := f.l.b.p.Load(); b.Tunnel != f.tunnel || s.tunnelNamed(b.Tunnel) != f.te {
			// The binding's tunnel was deleted (and maybe created again
			// under its name), or the binding names another one now: the
			// flow's tunnel will never come back. End it, so that the
			// user's next datagram opens a flow on the tunnel the binding
			// names now.
			s.closeFlow(f, false)
		}
		return
	}
	f.touch()
	if !f.confirmed.Load() {
		_ = lc.conn.SendDatagram(open)
	}
	// The payload already sits after the header room: frame it in place.
	d := tunnel.FrameDatagram(buf, id, n)
	if err := lc.conn.SendDatagram(d); err != nil {
		s.m.Dropped.Inc()
		s.log.Debug("edge: udp datagram dropped", "user", f.user, "flow", id, "err", err)
		return
	}
	s.m.DgToOrigin.Inc()
	addDatagram(lc, f.te, n, true)
}

// receiveDatagrams handles the datagrams of lc, a connection of te, until it ends.
func (s *Server) receiveDatagrams(lc *liveConn, te *tunnelEntry) {
	ctx := lc.conn.Context()
	buf := make([]byte, tunnel.MaxDatagramLen)
	ctl := make([]byte, 0, tunnel.DatagramHeaderLen+1)
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
		s.handleDatagram(lc, te, buf[:n], ctl)
	}
}

// handleDatagram handles one datagram d from lc, a connection of te. ctl is
// scratch space for a FlowClose. A flow is looked up in lc's own table only.
func (s *Server) handleDatagram(lc *liveConn, te *tunnelEntry, d, ctl []byte) {
	typ, id, body, err := tunnel.ParseDatagram(d)
	if err != nil || typ == tunnel.DatagramFlowOpen { // FlowOpen goes the other way only
		s.m.Dropped.Inc()
		return
	}
	f := lc.flow(id)
	if f == nil {
		s.flowMismatch(lc, te, typ, id)
		if typ == tunnel.DatagramData {
			// The connector's end of a flow the edge closed (or never had
			// on this connection): tell it to close. The answer is the same
			// whoever owns the ID elsewhere.
			s.m.Dropped.Inc()
			_ = lc.conn.SendDatagram(tunnel.AppendFlowClose(ctl[:0], id, tunnel.FlowClosed))
		}
		return
	}
	switch typ {
	case tunnel.DatagramData:
		if f.closed.Load() {
			s.m.Dropped.Inc()
			_ = lc.conn.SendDatagram(tunnel.AppendFlowClose(ctl[:0], id, tunnel.FlowClosed))
			return
		}
		if !f.confirmed.Load() {
			f.confirmed.Store(true)
		}
		if !f.answered.Load() {
			f.answered.Store(true)
		}
		f.touch()
		if err := f.l.write(body, f.user); err != nil {
			s.m.Dropped.Inc()
			return
		}
		s.m.DgToPeer.Inc()
		addDatagram(lc, te, len(body), false)
	case tunnel.DatagramFlowClose:
		reason, err := tunnel.ParseFlowClose(body)
		if err != nil {
			s.m.Dropped.Inc()
			return
		}
		// The flow may have moved since the lookup: act only if lc still
		// carries it under id.
		f.mu.Lock()
		owned, open := f.lc == lc && f.id == id, f.open
		f.mu.Unlock()
		if !owned {
			s.flowMismatch(lc, te, typ, id)
			return
		}
		if reason == tunnel.FlowUnknown {
			// The connector lost the flow (restart, lost FlowOpen): open it again.
			f.confirmed.Store(false)
			_ = lc.conn.SendDatagram(open)
			return
		}
		switch reason {
		case tunnel.FlowOriginUnreachable:
			s.m.Error(errOrigin)
		case tunnel.FlowNoRule, tunnel.FlowTooMany:
			s.m.Error(errRefused)
		}
		if ok, held := s.userLogDue(logFlowClosed); ok {
			s.log.Info("edge: udp flow closed by connector", "user", f.user, "tunnel", tunnelName(f.te.id), "flow", id,
				"reason", flowReason(reason), notLogged, held)
		}
		s.closeFlow(f, false)
	}
}

// flowMismatch counts a datagram of lc (a connection of te) naming flow id,
// which lc does not carry, by whose flow it is, and logs it (at most once a
// second) unless no flow has the ID, which a late datagram of a closed flow
// does not make suspect.
func (s *Server) flowMismatch(lc *liveConn, te *tunnelEntry, typ tunnel.DatagramType, id uint32) {
	s.flowMu.RLock()
	g := s.flowIDs[id]
	s.flowMu.RUnlock()
	reason := mismatchUnknown
	switch {
	case g == nil:
	case g.te == te:
		reason = mismatchOtherConn
	default:
		reason = mismatchOtherTunnel
	}
	s.udp.mismatches[reason].Inc()
	if reason == mismatchUnknown {
		return
	}
	if ok, held := s.logUDPMismatch.allow(time.Now().UnixNano()); ok {
		cid := lc.conn.ConnectorID()
		what := "data"
		if typ == tunnel.DatagramFlowClose {
			what = "flow close"
		}
		s.log.Warn("edge: connector named a udp flow its connection does not own; ignored",
			"tunnel", tunnelName(te.id), "connector", hex.EncodeToString(cid[:]), "remote", lc.conn.RemoteAddr(),
			"flow", id, "datagram", what, "owner", mismatchNames[reason], "ignored_since_last_line", held)
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
	f.mu.Lock()
	lc, id := f.lc, f.id
	s.detach(f)
	f.mu.Unlock()
	f.l.mu.Lock()
	if f.l.byAddr[f.user] == f {
		delete(f.l.byAddr, f.user)
	}
	f.l.mu.Unlock()
	f.te.udpFlows.Add(-1)
	s.m.FlowsOpen.Dec()
	if notify && lc.conn.Context().Err() == nil {
		var ctl [tunnel.DatagramHeaderLen + 1]byte
		_ = lc.conn.SendDatagram(tunnel.AppendFlowClose(ctl[:0], id, tunnel.FlowClosed))
	}
}

// expireFlows closes the flows of l idle for UDPFlowIdle, or for
// UDPUnrepliedIdle if the origin never answered them, until ctx is done. It
// scans every flow of l once per quarter of UDPUnrepliedIdle (at most every
// 5s): a few atomic loads per flow, some 100 µs for 10,000 flows.
func (s *Server) expireFlows(ctx context.Context, l *udpListener) {
	period := func() time.Duration { return min(max(s.cur().UDPUnrepliedIdle/4, 10*time.Millisecond), 5*time.Second) }
	every := period()
	t := time.NewTicker(every)
	defer t.Stop()
	var expired []*udpFlow
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			expired = s.expired(l, now.UnixNano(), expired[:0])
			for _, f := range expired {
				s.log.Debug("edge: udp flow idle", "user", f.user, "answered", f.answered.Load())
				s.closeFlow(f, true)
			}
			clear(expired) // hold no closed flow until the next scan
			// SetLimits may have changed UDPUnrepliedIdle.
			if p := period(); p != every {
				every = p
				t.Reset(every)
			}
		}
	}
}

// expired appends to dst the flows of l due to expire at now.
func (s *Server) expired(l *udpListener, now int64, dst []*udpFlow) []*udpFlow {
	lim := s.cur()
	idle, unreplied := int64(lim.UDPFlowIdle), int64(lim.UDPUnrepliedIdle)
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.byAddr {
		limit := unreplied
		if f.answered.Load() {
			limit = idle
		}
		if now-f.last.Load() >= limit {
			dst = append(dst, f)
		}
	}
	return dst
}
