package ingress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"
)

// ErrWrongScheme is the sentinel a *SchemeError unwraps to.
var ErrWrongScheme = errors.New("service scheme does not fit this dialer")

// SchemeError is returned by a dialer called on a rule whose service it
// cannot reach: DialStream on udp or http_status, DialUDP on anything but
// udp.
type SchemeError struct {
	Op      string  // the dialer, e.g. "dial stream"
	Service Service // the rule's service
}

// Error returns e.g. `ingress: dial stream: udp://198.18.2.10:53 is not a
// stream service`.
func (e *SchemeError) Error() string {
	what := "a stream"
	if e.Op == "dial udp" {
		what = "a udp"
	}
	return "ingress: " + e.Op + ": " + e.Service.String() + " is not " + what + " service"
}

// Unwrap returns ErrWrongScheme.
func (e *SchemeError) Unwrap() error { return ErrWrongScheme }

// DialStream connects to the rule's origin for one user connection.
//
// tcp and http services get a TCP connection, unix services a Unix stream
// connection. https services get a TCP connection wrapped in TLS, the
// handshake done, using the rule's TLS settings and ALPN "http/1.1" —
// unless tlsPassthrough is true, when the user's own TLS is to be carried
// through and the raw TCP connection is returned. udp and http_status
// services return a *SchemeError.
//
// ConnectTimeout bounds the connect and the TLS handshake together, on top
// of any deadline of ctx; TCPKeepAlive sets the keep-alive period. Errors
// wrap the underlying net errors: errors.Is(err, syscall.ECONNREFUSED)
// works.
func (r *Rule) DialStream(ctx context.Context, tlsPassthrough bool) (net.Conn, error) {
	network := "tcp"
	switch r.service.Scheme {
	case SchemeTCP, SchemeHTTP, SchemeHTTPS:
	case SchemeUnix:
		network = "unix"
	default:
		return nil, &SchemeError{Op: "dial stream", Service: r.service}
	}
	if r.connectTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.connectTimeout)
		defer cancel()
	}
	d := net.Dialer{KeepAlive: r.keepAlive()}
	conn, err := d.DialContext(ctx, network, r.service.Addr)
	if err != nil {
		return nil, fmt.Errorf("ingress: dial %s: %w", r.service, err)
	}
	if r.service.Scheme != SchemeHTTPS || tlsPassthrough {
		return conn, nil
	}
	tc := tls.Client(conn, r.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("ingress: tls handshake with %s: %w", r.service, err)
	}
	return tc, nil
}

// DialUDP connects a UDP socket to the rule's udp:// origin. Other
// services return a *SchemeError. ConnectTimeout bounds name resolution.
func (r *Rule) DialUDP(ctx context.Context) (*net.UDPConn, error) {
	if r.service.Scheme != SchemeUDP {
		return nil, &SchemeError{Op: "dial udp", Service: r.service}
	}
	if r.connectTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.connectTimeout)
		defer cancel()
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", r.service.Addr)
	if err != nil {
		return nil, fmt.Errorf("ingress: dial %s: %w", r.service, err)
	}
	uc, ok := conn.(*net.UDPConn)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("ingress: dial %s: got %T, not *net.UDPConn", r.service, conn)
	}
	return uc, nil
}

// keepAlive converts TCPKeepAlive to net.Dialer's convention, where 0
// means a default period and a negative value disables keep-alive.
func (r *Rule) keepAlive() time.Duration {
	if r.tcpKeepAlive == 0 {
		return -1
	}
	return r.tcpKeepAlive
}
