package ingress

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Scheme is the kind of origin a rule forwards to.
type Scheme uint8

// The schemes a service may use. The zero Scheme is invalid.
const (
	SchemeTCP        Scheme = iota + 1 // tcp://host:port, a raw TCP stream
	SchemeUDP                          // udp://host:port, datagrams
	SchemeHTTP                         // http://host[:port], plain TCP carrying HTTP
	SchemeHTTPS                        // https://host[:port], TLS to the origin
	SchemeUnix                         // unix:path, a Unix stream socket
	SchemeHTTPStatus                   // http_status:code, answered by the connector
)

var schemeNames = [...]string{
	SchemeTCP:        "tcp",
	SchemeUDP:        "udp",
	SchemeHTTP:       "http",
	SchemeHTTPS:      "https",
	SchemeUnix:       "unix",
	SchemeHTTPStatus: "http_status",
}

// String returns the scheme as written in a service URL, e.g. "https".
func (s Scheme) String() string {
	if int(s) < len(schemeNames) && s != 0 {
		return schemeNames[s]
	}
	return "Scheme(" + strconv.Itoa(int(s)) + ")"
}

// Service is the parsed service of a rule: where matching connections go.
// It is a comparable value type.
type Service struct {
	// Scheme is the kind of origin.
	Scheme Scheme
	// Addr is "host:port" for tcp, udp, http and https (the default port
	// 80 or 443 filled in for http and https; IPv6 hosts in brackets), the
	// socket path for unix, and empty for http_status.
	Addr string
	// Status is the HTTP status code for http_status, 0 otherwise.
	Status int
}

// String returns the service in canonical URL form, e.g.
// "tcp://[fd00::2]:7", "unix:/run/app.sock" or "http_status:404".
func (s Service) String() string {
	switch s.Scheme {
	case SchemeUnix:
		return "unix:" + s.Addr
	case SchemeHTTPStatus:
		return "http_status:" + strconv.Itoa(s.Status)
	}
	return s.Scheme.String() + "://" + s.Addr
}

// Host returns the host part of Addr without brackets, or "" for unix and
// http_status services.
func (s Service) Host() string {
	switch s.Scheme {
	case SchemeUnix, SchemeHTTPStatus:
		return ""
	}
	host, _, err := net.SplitHostPort(s.Addr)
	if err != nil {
		return ""
	}
	return host
}

// errUnsupportedScheme is the reason given for an unknown service scheme.
const wantSchemes = "want tcp, udp, http, https, unix, http_status"

// parseService parses the service field of a rule. The returned error is
// the reason only; the caller adds the rule and field.
func parseService(s string) (Service, error) {
	if s == "" {
		return Service{}, errors.New("missing service")
	}
	colon := strings.IndexByte(s, ':')
	if colon <= 0 {
		return Service{}, fmt.Errorf("missing scheme in %q (%s)", s, wantSchemes)
	}
	scheme, rest := strings.ToLower(s[:colon]), s[colon+1:]
	switch scheme {
	case "unix":
		// Accept unix:/path and the URL form unix:///path.
		if strings.HasPrefix(rest, "///") {
			rest = rest[2:]
		}
		if rest == "" {
			return Service{}, fmt.Errorf("missing socket path in %q (want unix:/path/to.sock)", s)
		}
		if strings.ContainsAny(rest, "\x00") {
			return Service{}, fmt.Errorf("socket path %q contains a NUL byte", rest)
		}
		return Service{Scheme: SchemeUnix, Addr: rest}, nil
	case "http_status":
		code, err := strconv.Atoi(rest)
		if err != nil {
			return Service{}, fmt.Errorf("status code %q is not a number (want http_status:404)", rest)
		}
		if code < 100 || code > 599 {
			return Service{}, fmt.Errorf("status code %d outside 100-599", code)
		}
		return Service{Scheme: SchemeHTTPStatus, Status: code}, nil
	}
	var sch Scheme
	defPort := ""
	switch scheme {
	case "tcp":
		sch = SchemeTCP
	case "udp":
		sch = SchemeUDP
	case "http":
		sch, defPort = SchemeHTTP, "80"
	case "https":
		sch, defPort = SchemeHTTPS, "443"
	default:
		return Service{}, fmt.Errorf("unsupported scheme %q (%s)", s[:colon], wantSchemes)
	}
	if !strings.HasPrefix(rest, "//") {
		return Service{}, fmt.Errorf("want %s://host:port, got %q", scheme, s)
	}
	authority := rest[2:]
	if i := strings.IndexAny(authority, "/?#"); i >= 0 {
		tail := authority[i:]
		authority = authority[:i]
		if tail != "/" || sch == SchemeTCP || sch == SchemeUDP {
			return Service{}, fmt.Errorf("unexpected %q after host:port in %q (paths, queries and fragments are not supported)", tail, s)
		}
	}
	if strings.IndexByte(authority, '@') >= 0 {
		return Service{}, fmt.Errorf("user info not supported in %q", s)
	}
	host, port, err := splitHostPort(authority, defPort)
	if err != nil {
		return Service{}, fmt.Errorf("%v in %q", err, s)
	}
	return Service{Scheme: sch, Addr: net.JoinHostPort(host, port)}, nil
}

// splitHostPort splits an authority into host and port, using defPort when
// the port is absent and defPort is not empty. It validates the port and
// that the host is an IP address or a plausible DNS name.
func splitHostPort(authority, defPort string) (host, port string, err error) {
	if authority == "" {
		return "", "", errors.New("missing host")
	}
	hasPort := false
	if authority[0] == '[' {
		end := strings.IndexByte(authority, ']')
		if end < 0 {
			return "", "", errors.New("missing ']' after IPv6 address")
		}
		hasPort = end+1 < len(authority)
		if hasPort && authority[end+1] != ':' {
			return "", "", fmt.Errorf("unexpected %q after IPv6 address", authority[end+1:])
		}
	} else {
		switch strings.Count(authority, ":") {
		case 0:
		case 1:
			hasPort = true
		default:
			return "", "", errors.New("IPv6 address must be in brackets")
		}
	}
	if hasPort {
		host, port, err = net.SplitHostPort(authority)
		if err != nil {
			return "", "", err
		}
	} else {
		host, port = strings.TrimSuffix(strings.TrimPrefix(authority, "["), "]"), defPort
	}
	if port == "" {
		return "", "", errors.New("missing port")
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || port[0] == '+' || port[0] == '-' {
		return "", "", fmt.Errorf("bad port %q (want 1-65535)", port)
	}
	if host == "" {
		return "", "", errors.New("missing host")
	}
	if authority[0] == '[' {
		if ip := net.ParseIP(zoneless(host)); ip == nil || ip.To4() != nil && !strings.Contains(host, ":") {
			return "", "", fmt.Errorf("bad IPv6 address %q", host)
		}
		return host, strconv.Itoa(n), nil
	}
	if net.ParseIP(host) == nil {
		if err := checkDNSName(host); err != nil {
			return "", "", fmt.Errorf("bad host %q: %v", host, err)
		}
	}
	return host, strconv.Itoa(n), nil
}

// zoneless strips an IPv6 zone ("%eth0") from host.
func zoneless(host string) string {
	if i := strings.IndexByte(host, '%'); i >= 0 {
		return host[:i]
	}
	return host
}
