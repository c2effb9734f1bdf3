package connector

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onramp-net/onramp/l4proxy/ingress"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

// defaultFlowIdle ends a UDP flow whose rule sets no idleTimeout.
const defaultFlowIdle = 60 * time.Second

// flowUnrepliedIdle ends a UDP flow the origin never answered sooner, as
// the edge does (its limits.udpUnrepliedIdle, 10s by default): should the
// edge's FlowClose be lost (datagrams are unreliable), a flood of spoofed
// sources at a binding still leaves no origin socket open for long here.
// Closing early costs a flow nothing: until the origin answers, the edge
// sends FlowOpen before each datagram, which opens it again. A variable
// for tests.
var flowUnrepliedIdle = 10 * time.Second

// maxFlowsPerConn bounds the UDP flows of one connection; more are refused
// with FlowTooMany.
const maxFlowsPerConn = 10000

// dgPool holds *[]byte big enough for any tunnel datagram, one per flow
// reader while it runs.
var dgPool = sync.Pool{New: func() any { b := make([]byte, tunnel.MaxDatagramLen); return &b }}

// flow is one UDP flow: datagrams of one user, relayed over a connected UDP
// socket to the origin of a udp rule.
type flow struct {
	id   uint32
	ec   *edgeConn
	idle time.Duration

	uc     *net.UDPConn // set before ready
	ready  atomic.Bool
	last   atomic.Int64 // unix nanoseconds of the last datagram either way
	closed atomic.Bool
}

func (f *flow) touch() { f.last.Store(time.Now().UnixNano()) }

// receiveDatagrams handles the datagrams of ec until it ends.
func (c *Connector) receiveDatagrams(ec *edgeConn) {
	ctx := ec.conn.Context()
	buf := make([]byte, tunnel.MaxDatagramLen)
	var ctl [tunnel.DatagramHeaderLen + 1]byte
	for {
		n, err := ec.conn.ReceiveDatagram(ctx, buf)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !errors.Is(err, io.ErrShortBuffer) {
				c.log.Debug("connector: receive datagram", "err", err)
				time.Sleep(10 * time.Millisecond)
			}
			continue
		}
		typ, id, body, err := tunnel.ParseDatagram(buf[:n])
		if err != nil {
			c.m.Dropped.Inc()
			continue
		}
		switch typ {
		case tunnel.DatagramData:
			ec.flowMu.Lock()
			f := ec.flows[id]
			ec.flowMu.Unlock()
			if f == nil {
				c.m.Dropped.Inc()
				_ = ec.conn.SendDatagram(tunnel.AppendFlowClose(ctl[:0], id, tunnel.FlowUnknown))
				continue
			}
			if !f.ready.Load() {
				c.m.Dropped.Inc()
				continue
			}
			f.touch()
			if _, err := f.uc.Write(body); err != nil {
				c.m.Dropped.Inc()
				continue
			}
			c.m.DgToOrigin.Inc()
		case tunnel.DatagramFlowOpen:
			c.openFlow(ec, id, body)
		case tunnel.DatagramFlowClose:
			ec.flowMu.Lock()
			f := ec.flows[id]
			ec.flowMu.Unlock()
			if f != nil {
				c.closeFlow(f, tunnel.FlowClosed, false)
			}
		}
	}
}

// openFlow handles a FlowOpen: a repeat for a known flow is a no-op.
func (c *Connector) openFlow(ec *edgeConn, id uint32, body []byte) {
	var ctl [tunnel.DatagramHeaderLen + 1]byte
	refuse := func(r tunnel.FlowCloseReason) {
		_ = ec.conn.SendDatagram(tunnel.AppendFlowClose(ctl[:0], id, r))
	}
	ec.flowMu.Lock()
	_, known := ec.flows[id]
	n := len(ec.flows)
	ec.flowMu.Unlock()
	if known {
		return
	}
	fo, err := tunnel.ParseFlowOpen(body)
	if err != nil {
		c.m.Dropped.Inc()
		return
	}
	if c.isStopping() {
		refuse(tunnel.FlowClosed)
		return
	}
	log := c.log.With("edge", ec.edge, "hostname", fo.Hostname, "user", fo.Remote, "flow", id)
	if n >= maxFlowsPerConn {
		log.Warn("connector: udp flow refused: too many flows")
		refuse(tunnel.FlowTooMany)
		return
	}
	rule := c.ingress.Load().Match(fo.Hostname, "")
	if rule == nil || rule.Service().Scheme != ingress.SchemeUDP {
		c.m.Error(errNoRule)
		log.Info("connector: udp flow refused: no udp ingress rule")
		refuse(tunnel.FlowNoRule)
		return
	}
	idle := rule.IdleTimeout()
	if idle <= 0 {
		idle = defaultFlowIdle
	}
	f := &flow{id: id, ec: ec, idle: idle}
	f.touch()
	ec.flowMu.Lock()
	ec.flows[id] = f
	ec.flowMu.Unlock()
	c.m.FlowsOpen.Inc()
	c.m.FlowsTotal.Inc()
	// An IP literal dials at once (a socket and a connect); a name may
	// take a DNS lookup, which must not hold up the other flows.
	if _, err := netip.ParseAddr(rule.Service().Host()); err == nil {
		c.startFlow(f, rule, log)
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.startFlow(f, rule, log)
	}()
}

func (c *Connector) startFlow(f *flow, rule *ingress.Rule, log *slog.Logger) {
	uc, err := rule.DialUDP(f.ec.conn.Context())
	if err != nil {
		c.m.Error(errOriginDial)
		log.Warn("connector: udp origin unreachable", "err", err)
		c.closeFlow(f, tunnel.FlowOriginUnreachable, true)
		return
	}
	f.uc = uc
	f.ready.Store(true)
	if f.closed.Load() { // closed while dialing
		uc.Close()
		return
	}
	log.Debug("connector: udp flow opened", "origin", rule.Service().Addr)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.flowReader(f)
	}()
}

// flowReader relays the origin's datagrams to the edge and expires the flow
// when idle: after f.idle, or flowUnrepliedIdle until the origin answered.
// Its buffer comes from dgPool: no allocation per datagram.
func (c *Connector) flowReader(f *flow) {
	bp := dgPool.Get().(*[]byte)
	defer dgPool.Put(bp)
	buf := *bp
	idle := min(f.idle, flowUnrepliedIdle) // until the origin answers
	_ = f.uc.SetReadDeadline(time.Now().Add(idle))
	for {
		n, err := f.uc.Read(buf[tunnel.DatagramHeaderLen:])
		if err != nil {
			if f.closed.Load() {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				last := time.Unix(0, f.last.Load())
				if time.Since(last) >= idle {
					c.closeFlow(f, tunnel.FlowClosed, true)
					return
				}
				_ = f.uc.SetReadDeadline(last.Add(idle))
				continue
			}
			// ECONNREFUSED after an ICMP port unreachable, and the like.
			c.m.Error(errOriginDial)
			c.log.Info("connector: udp origin failed", "flow", f.id, "err", err)
			c.closeFlow(f, tunnel.FlowOriginUnreachable, true)
			return
		}
		f.touch()
		idle = f.idle // answered
		d := tunnel.FrameDatagram(buf, f.id, n)
		if err := f.ec.conn.SendDatagram(d); err != nil {
			c.m.Dropped.Inc()
			if f.ec.conn.Context().Err() != nil {
				return
			}
			continue
		}
		c.m.DgToPeer.Inc()
	}
}

// closeFlow ends f, telling the edge why if notify is set.
func (c *Connector) closeFlow(f *flow, reason tunnel.FlowCloseReason, notify bool) {
	if !f.closed.CompareAndSwap(false, true) {
		return
	}
	f.ec.flowMu.Lock()
	if f.ec.flows[f.id] == f {
		delete(f.ec.flows, f.id)
	}
	f.ec.flowMu.Unlock()
	c.m.FlowsOpen.Dec()
	if f.ready.Load() {
		f.uc.Close()
	}
	if notify {
		var ctl [tunnel.DatagramHeaderLen + 1]byte
		_ = f.ec.conn.SendDatagram(tunnel.AppendFlowClose(ctl[:0], f.id, reason))
	}
}

// closeFlows ends every flow of ec (which is gone).
func (c *Connector) closeFlows(ec *edgeConn) {
	ec.flowMu.Lock()
	flows := make([]*flow, 0, len(ec.flows))
	for _, f := range ec.flows {
		flows = append(flows, f)
	}
	ec.flowMu.Unlock()
	for _, f := range flows {
		c.closeFlow(f, tunnel.FlowClosed, false)
	}
}
