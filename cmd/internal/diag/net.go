package diag

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

// Timeout bounds each network check.
const Timeout = 3 * time.Second

// Resolver looks names up; *net.Resolver is one.
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// DNS checks that the host of addr ("host:port") resolves, and returns
// its addresses (addr's own for an IP literal). what names the address
// in the report, e.g. "edge".
func DNS(ctx context.Context, r Resolver, what, addr string) (Result, []netip.Addr) {
	res := Result{Check: "dns " + what + " " + addr}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		res.Status, res.Detail = Fail, fmt.Sprintf("%q is not host:port: %v.", addr, err)
		return res, nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		res.Detail = "an IP address; nothing to look up."
		return res, []netip.Addr{ip}
	}
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	names, err := r.LookupHost(ctx, host)
	var ips []netip.Addr
	for _, n := range names {
		if ip, err := netip.ParseAddr(n); err == nil {
			ips = append(ips, ip.Unmap())
		}
	}
	if err != nil || len(ips) == 0 {
		res.Status = Fail
		res.Detail = fmt.Sprintf("%s does not resolve: %v.", host, errOr(err, "no addresses"))
		res.Fix = "check the DNS name (the edge's advertise: setting made it), /etc/resolv.conf and that this host reaches its DNS server; `getent hosts " + host + "` shows what the system resolver says."
		return res, nil
	}
	res.Detail = fmt.Sprintf("%s resolves to %v.", host, ips)
	return res, ips
}

func errOr(err error, s string) string {
	if err != nil {
		return err.Error()
	}
	return s
}

// Route is what the kernel's route lookup says of the way to an address.
type Route struct {
	Interface string // the outgoing interface, "" if not found
	Source    netip.Addr
	// MTU is the path MTU the kernel holds for the destination: the
	// route's or interface's MTU, or a smaller one learnt from ICMP.
	MTU int
}

// LookupRoute asks the kernel for the route to ip: it connects a UDP
// socket (nothing is sent) and reads the socket's path MTU (IP_MTU) and
// source address.
func LookupRoute(ip netip.Addr) (Route, error) {
	network := "udp4"
	if ip.Is6() && !ip.Is4In6() {
		network = "udp6"
	}
	c, err := net.DialUDP(network, nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 9)))
	if err != nil {
		return Route{}, err
	}
	defer c.Close()
	var rt Route
	rt.Source = c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	rc, err := c.SyscallConn()
	if err != nil {
		return Route{}, err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		if network == "udp4" {
			rt.MTU, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU)
		} else {
			rt.MTU, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MTU)
		}
	}); err != nil {
		return Route{}, err
	}
	if serr != nil {
		return Route{}, fmt.Errorf("path mtu: %w", serr)
	}
	rt.Interface = interfaceOf(rt.Source)
	return rt, nil
}

// interfaceOf names the interface that holds ip.
func interfaceOf(ip netip.Addr) string {
	ifs, err := net.Interfaces()
	if err != nil {
		return ""
	}
	for _, ifc := range ifs {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Unmap() == ip {
				return ifc.Name
			}
		}
	}
	return ""
}

// QUIC needs UDP datagrams of at least 1200 bytes: IP packets of 1228
// bytes over IPv4, 1248 over IPv6.
const quicMinPayload = 1200

func ipUDPOverhead(ip netip.Addr) int {
	if ip.Is4() || ip.Is4In6() {
		return 20 + 8
	}
	return 40 + 8
}

// MTU checks the route to ip (the address of what) for QUIC: the path
// MTU must carry QUIC's 1200-byte datagrams; under 1500 is said, as a
// link that lowers it (a VPN, PPPoE) is where packets go missing.
func MTU(what string, ip netip.Addr) Result {
	res := Result{Check: "mtu " + what + " " + ip.String()}
	rt, err := LookupRoute(ip)
	if err != nil {
		res.Status, res.Detail = Fail, fmt.Sprintf("no route: %v.", err)
		res.Fix = "check this host's routes (`ip route get " + ip.String() + "`): it needs a default route or one to the edge."
		return res
	}
	return mtuVerdict(res, ip, rt)
}

func mtuVerdict(res Result, ip netip.Addr, rt Route) Result {
	need := quicMinPayload + ipUDPOverhead(ip)
	via := fmt.Sprintf("via %s (source %s)", orDash(rt.Interface), rt.Source)
	switch {
	case rt.MTU < need:
		res.Status = Fail
		res.Detail = fmt.Sprintf("path MTU %d %s is below the %d bytes QUIC's smallest packets need (1200-byte datagrams): QUIC cannot work on this path.", rt.MTU, via, need)
		res.Fix = fmt.Sprintf("raise the MTU of %s (`ip link set dev %s mtu 1500`) or use --protocol http2.", orDash(rt.Interface), orDash(rt.Interface))
	case rt.MTU < 1500:
		res.Detail = fmt.Sprintf("path MTU %d %s: below Ethernet's 1500 (a VPN, PPPoE or tunnel link) but QUIC's packets (1200 bytes and up, probed) fit.", rt.MTU, via)
	default:
		res.Detail = fmt.Sprintf("path MTU %d %s: QUIC's packets fit.", rt.MTU, via)
	}
	return res
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Transports probes the edge at addr ("host:port" from the token) over
// QUIC (UDP) and HTTP/2 over TLS (TCP), handshakes only: nothing joins
// the tunnel. It returns the QUIC and HTTP/2 verdicts and the HTTP/2
// probe, which carries the edge's clock.
func Transports(ctx context.Context, addr string, pin [32]byte) (quicRes, h2Res Result, h2 tunnel.Probe, h2err error) {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	var q tunnel.Probe
	var qerr error
	done := make(chan struct{})
	go func() { // both at once: a blocked one costs the whole timeout
		defer close(done)
		q, qerr = tunnel.ProbeQUIC(ctx, addr, pin)
	}()
	h2, h2err = tunnel.ProbeHTTP2(ctx, addr, pin)
	<-done
	return transportVerdicts(addr, q, qerr, h2, h2err)
}

func transportVerdicts(addr string, q tunnel.Probe, qerr error, h2 tunnel.Probe, h2err error) (quicRes, h2Res Result, _ tunnel.Probe, _ error) {
	quicRes = Result{Check: "quic " + addr + " (udp)"}
	h2Res = Result{Check: "http2 " + addr + " (tcp)"}
	pinFix := "the token's pin does not match this edge's certificate: the address now reaches another edge, or the edge's certificate was replaced; make a new token (edge tunnel rotate NAME prints one) or fix the address."
	switch {
	case qerr == nil:
		quicRes.Detail = fmt.Sprintf("QUIC handshake in %v (rtt %v): the connector uses QUIC.", q.Handshake.Round(time.Millisecond), q.RTT.Round(time.Millisecond))
	case errors.Is(qerr, tunnel.ErrPinMismatch):
		quicRes.Status, quicRes.Detail, quicRes.Fix = Fail, "the edge answered with a certificate that does not match the token's pin.", pinFix
	default:
		quicRes.Detail = fmt.Sprintf("no QUIC handshake (waited up to %v): %v. UDP to this port is blocked or lost on the way (a firewall, or a network that allows only TCP).", Timeout, qerr)
		if h2err == nil {
			quicRes.Status = Warn
			quicRes.Detail += " HTTP/2 fallback would be used: the connector works over TCP (with --protocol auto, the default), with more latency under loss."
			quicRes.Fix = "to use QUIC, allow outgoing UDP to " + addr + " (and its replies) in the firewalls on the way."
		} else {
			quicRes.Status = Fail
			quicRes.Fix = "allow outgoing UDP (QUIC) or TCP (HTTP/2) to " + addr + " in the firewalls on the way."
		}
	}
	switch {
	case h2err == nil:
		h2Res.Detail = fmt.Sprintf("TLS handshake in %v: the HTTP/2 fallback works.", h2.Handshake.Round(time.Millisecond))
	case errors.Is(h2err, tunnel.ErrPinMismatch):
		h2Res.Status, h2Res.Detail, h2Res.Fix = Fail, "the edge answered with a certificate that does not match the token's pin.", pinFix
	default:
		h2Res.Detail = fmt.Sprintf("no TLS handshake (waited up to %v): %v.", Timeout, h2err)
		if qerr == nil {
			h2Res.Status = Warn
			h2Res.Detail += " QUIC works, but where UDP is later blocked there is no fallback."
			h2Res.Fix = "allow outgoing TCP to " + addr + " for the HTTP/2 fallback."
		} else {
			h2Res.Status = Fail
			h2Res.Detail += " Neither transport reaches the edge: the connector cannot connect."
			h2Res.Fix = "check the address and that the edge runs (edge diag on the edge); allow outgoing UDP and TCP to " + addr + "."
		}
	}
	return quicRes, h2Res, h2, h2err
}

// Clock skew thresholds: beyond ClockWarn the edge's and the connector's
// logs and metrics disagree; beyond ClockFail certificates of https
// origins may look expired or not yet valid to the connector.
const (
	ClockWarn = 10 * time.Second
	ClockFail = 24 * time.Hour
)

// Clock compares the edge's clock, as its HTTP/2 probe reported it, with
// the local one (plus h.ClockOffset). The edge stamps its PING right
// after the handshake, about half an RTT before it arrives.
func Clock(h Host, addr string, p tunnel.Probe, perr error) Result {
	res := Result{Check: "clock vs edge " + addr}
	if perr != nil || p.EdgeTime.IsZero() {
		res.Status = Warn
		res.Detail = "cannot compare clocks: the edge's clock comes with its HTTP/2 handshake, which did not complete."
		if perr == nil {
			res.Detail = "cannot compare clocks: the edge sent no clock (an older edge)."
		}
		return res
	}
	local := p.Received.Add(h.ClockOffset).Add(-p.RTT / 2)
	skew := local.Sub(p.EdgeTime) // > 0: this host is ahead
	abs := skew.Abs()
	dir := "ahead of"
	if skew < 0 {
		dir = "behind"
	}
	// The edge's stamp and the RTT estimate are good to some
	// milliseconds: a skew of a second or more reads in whole seconds
	// (48h0m0s, not 47h59m59.998s).
	shown := abs.Round(time.Millisecond)
	if abs >= time.Second {
		shown = abs.Round(time.Second)
	}
	res.Detail = fmt.Sprintf("this host's clock is %v %s the edge's.", shown, dir)
	if abs < time.Millisecond {
		res.Detail = "this host's clock and the edge's agree to the millisecond."
	}
	switch {
	case abs >= ClockFail:
		res.Status = Fail
		res.Detail += " Certificates of https origins may look expired or not yet valid, and the logs of both ends cannot be matched."
	case abs >= ClockWarn:
		res.Status = Warn
		res.Detail += " The edge's and the connector's logs and metrics will not line up."
	default:
		return res
	}
	res.Fix = "synchronise the clocks with NTP on this host and on the edge (`timedatectl set-ntp true`, or chrony); `timedatectl` shows whether it is synchronised."
	return res
}
