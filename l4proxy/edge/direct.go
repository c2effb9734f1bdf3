package edge

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/onramp-net/onramp/dataplane/relay"
	"github.com/onramp-net/onramp/l4proxy/internal/pipe"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

// OriginDialTimeout bounds the edge's connect to a direct origin.
const OriginDialTimeout = 5 * time.Second

// relayEngine returns the engine of the direct paths: Options.Relay, or
// one with the default strategy made at first use.
func (s *Server) relayEngine() *relay.Engine {
	s.relayOnce.Do(func() {
		if s.opts.Relay != nil {
			s.relay = s.opts.Relay
			return
		}
		e, err := relay.New(relay.Config{Log: s.log})
		if err != nil { // only a forced strategy fails
			s.log.Error("edge: relay engine", "err", err)
			e, _ = relay.New(relay.Config{Strategy: relay.Copy})
		}
		s.relay = e
	})
	return s.relay
}

// proxyDirect relays the user connection c to the origin of a direct route
// or binding: it dials the origin, writes the PROXY header (if the route
// asks for it) and prefix (the bytes already read from c) and hands both
// sockets to the relay engine, which moves the rest of the connection in
// the kernel where it can. It owns c. hostname is the SNI or Host ("" for
// a binding). It returns once the relay is started: the relay keeps the
// connection's slot (hold) until it ends, and an idle connection holds no
// goroutine.
func (s *Server) proxyDirect(ctx context.Context, c net.Conn, tg target, kind tunnel.Kind, hostname string, prefix []byte, hold *connHold) {
	isHTTP := kind == tunnel.KindHTTP
	logArgs := func(args ...any) []any {
		return append([]any{"user", c.RemoteAddr(), "origin", tg.origin, "kind", kind.String(), "hostname", hostname}, args...)
	}
	oc, err := dialOrigin(ctx, tg)
	if err != nil {
		s.m.Error(errOrigin)
		if ok, held := s.userLogDue(logOriginFailed); ok {
			s.log.Warn("edge: origin unreachable", logArgs("err", err, notLogged, held)...)
		}
		if isHTTP {
			s.answer(c, 502, "origin unreachable")
			return
		}
		c.Close()
		return
	}
	var head []byte
	if tg.proxyProtocol {
		head = appendProxyV2(make([]byte, 0, proxyV2MaxLen+len(prefix)), c.RemoteAddr(), c.LocalAddr())
	}
	head = append(head, prefix...)
	if len(head) > 0 {
		_ = oc.SetWriteDeadline(time.Now().Add(OriginDialTimeout))
		_, err := oc.Write(head)
		_ = oc.SetWriteDeadline(time.Time{})
		if err != nil {
			s.m.Error(errOrigin)
			if ok, held := s.userLogDue(logOriginFailed); ok {
				s.log.Warn("edge: origin unreachable", logArgs("err", err, notLogged, held)...)
			}
			oc.Close()
			if isHTTP {
				s.answer(c, 502, "origin unreachable")
				return
			}
			c.Close()
			return
		}
		s.m.BytesToOrigin.Add(float64(len(prefix)))
	}
	kindName := kind.String()
	open := s.m.Stream(kindName)
	open.Inc()
	release := hold.detach()
	prefixLen := int64(len(prefix))
	s.relayEngine().Start(ctx, c, oc, relay.Options{
		Idle: max(s.cur().IdleTimeout, 0), // negative: never
		AToB: s.m.BytesToOrigin, BToA: s.m.BytesToPeer,
	}, func(res relay.Result) {
		open.Dec()
		release()
		pr := pipe.Result{AToB: res.AToB + prefixLen, BToA: res.BToA, Err: res.Err, Idle: res.Idle}
		if errors.Is(res.Err, relay.ErrStopped) {
			pr.Err = pipe.ErrStopped
		}
		s.logResult(logArgs, pr)
	})
}

// originDialer dials direct origins. No TCP keep-alive toward the origin
// (HAProxy sets none by default either): limits.idleTimeout ends dead
// connections, and a connection costs three setsockopt calls less.
var originDialer = net.Dialer{KeepAlive: -1, Timeout: OriginDialTimeout}

// dialOrigin connects to tg's origin. (Dialer.DialTCP would skip the
// parsing of the address, but it binds the socket to the zero address
// before the connect: bind(2) takes an ephemeral port no TIME_WAIT
// socket holds, and at a few thousand connections a second the kernel's
// search for one took the edge's whole CPU.)
func dialOrigin(ctx context.Context, tg target) (net.Conn, error) {
	return originDialer.DialContext(ctx, "tcp", tg.origin)
}

// The PROXY protocol version 2 header (haproxy.org's proxy-protocol.txt):
// the signature, version 2 with the PROXY command, the address family
// and TCP, the length of the addresses, then source and destination
// addresses and ports.
var proxyV2Sig = [12]byte{0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a}

const (
	proxyV2Cmd    = 0x21 // version 2, PROXY
	proxyV2TCP4   = 0x11 // AF_INET, STREAM
	proxyV2TCP6   = 0x21 // AF_INET6, STREAM
	proxyV2Local  = 0x20 // version 2, LOCAL: no addresses
	proxyV2MaxLen = 16 + 36
)

// appendProxyV2 appends the PROXY v2 header for a connection from src to
// dst. Both IPv4 (also as IPv4-mapped IPv6) give a TCP4 header; otherwise
// TCP6, with an IPv4 address mapped. Addresses that are not TCP give a
// LOCAL header, which tells the origin to use the connection's own.
func appendProxyV2(b []byte, src, dst net.Addr) []byte {
	b = append(b, proxyV2Sig[:]...)
	s, sok := tcpAddrPort(src)
	d, dok := tcpAddrPort(dst)
	if !sok || !dok {
		return append(b, proxyV2Local, 0, 0, 0)
	}
	sa, da := s.Addr().Unmap(), d.Addr().Unmap()
	if sa.Is4() && da.Is4() {
		b = append(b, proxyV2Cmd, proxyV2TCP4, 0, 12)
		b = append(b, sa.AsSlice()...)
		b = append(b, da.AsSlice()...)
	} else {
		b = append(b, proxyV2Cmd, proxyV2TCP6, 0, 36)
		s16, d16 := netip.AddrFrom16(sa.As16()), netip.AddrFrom16(da.As16())
		b = append(b, s16.AsSlice()...)
		b = append(b, d16.AsSlice()...)
	}
	b = binary.BigEndian.AppendUint16(b, s.Port())
	return binary.BigEndian.AppendUint16(b, d.Port())
}

func tcpAddrPort(a net.Addr) (netip.AddrPort, bool) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, false
	}
	ap := ta.AddrPort()
	return ap, ap.IsValid()
}
