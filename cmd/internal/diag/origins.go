package diag

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/onramp-net/onramp/l4proxy/ingress"
)

// Origins checks that the origin of each ingress rule answers: a TCP or
// Unix socket connect (and the TLS handshake of https origins) within
// [Timeout], and for http and https origins the status of a HEAD /.
// udp origins are resolved only: whether a UDP service answers needs its
// own protocol.
func Origins(ctx context.Context, cfg *ingress.Config) []Result {
	var out []Result
	for _, r := range cfg.Rules() {
		out = append(out, origin(ctx, r))
	}
	return out
}

func origin(ctx context.Context, r *ingress.Rule) Result {
	svc := r.Service()
	res := Result{Check: "origin " + r.String() + " -> " + svc.String()}
	switch svc.Scheme {
	case ingress.SchemeHTTPStatus:
		res.Detail = fmt.Sprintf("answered by the connector itself (HTTP %d); no origin to reach.", svc.Status)
		return res
	case ingress.SchemeUDP:
		ctx, cancel := context.WithTimeout(ctx, Timeout)
		defer cancel()
		c, err := r.DialUDP(ctx)
		if err != nil {
			res.Status, res.Detail = Fail, fmt.Sprintf("cannot set up UDP to it: %v.", err)
			res.Fix = "check the address in the ingress rule."
			return res
		}
		c.Close()
		res.Detail = "the address resolves and is routed; whether the UDP service answers cannot be checked without its protocol."
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	start := time.Now()
	c, err := r.DialStream(ctx, r.TLSPassthrough())
	if err != nil {
		res.Status = Fail
		res.Detail = fmt.Sprintf("unreachable: %v. Users of this rule get an error.", err)
		res.Fix = originFix(svc, err)
		return res
	}
	defer c.Close()
	took := time.Since(start).Round(time.Millisecond)
	if (svc.Scheme != ingress.SchemeHTTP && svc.Scheme != ingress.SchemeHTTPS) || r.TLSPassthrough() {
		res.Detail = fmt.Sprintf("accepts connections (connected in %v).", took)
		return res
	}
	code, err := head(ctx, c, hostOf(r))
	switch {
	case err != nil:
		res.Status = Warn
		res.Detail = fmt.Sprintf("accepts connections but gave no HTTP answer to HEAD / within %v: %v.", Timeout, err)
		res.Fix = "check that the origin speaks " + svc.Scheme.String() + " (a TLS origin needs https://, a plain one http://)."
	case code >= 500:
		res.Status = Warn
		res.Detail = fmt.Sprintf("answers HEAD / with HTTP %d: the origin is up but failing.", code)
		res.Fix = "look at the origin's own logs."
	default:
		res.Detail = fmt.Sprintf("answers HEAD / with HTTP %d (connected in %v).", code, took)
	}
	return res
}

// hostOf is the Host header for a rule's HEAD: its hostname, unless a
// wildcard or absent, else the origin's address.
func hostOf(r *ingress.Rule) string {
	if h := r.Hostname(); h != "" && !strings.Contains(h, "*") {
		return h
	}
	return r.Service().Addr
}

// head sends HEAD / on c and returns the status.
func head(ctx context.Context, c net.Conn, host string) (int, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	req, err := http.NewRequest(http.MethodHead, "/", nil)
	if err != nil {
		return 0, err
	}
	req.Host = host
	req.Header.Set("User-Agent", "onramp-connector-diag")
	req.Close = true
	if err := req.Write(c); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func originFix(svc ingress.Service, err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "nothing listens there: start the service, or fix the address and port in the ingress rule."
	case errors.Is(err, syscall.ENOENT):
		return "the socket file does not exist: start the service, or fix the path in the ingress rule."
	case errors.Is(err, syscall.EACCES):
		return "the connector may not open the socket: give its user access to " + svc.Addr + "."
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return "no answer: a firewall drops the connection, or the host is down; check from this host with `nc -vz " + strings.ReplaceAll(svc.Addr, ":", " ") + "`."
	}
	return "check the address in the ingress rule and that the service runs."
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
