package edge

import (
	"errors"
	"fmt"
	"strings"
)

// Route sends users whose TLS SNI or HTTP Host matches Hostname to a tunnel.
// Hostname is exact ("app.example.test") or a leading wildcard
// ("*.example.test": any deeper subdomain, not the apex); matching is
// case-insensitive. An exact route wins over a wildcard, and a longer
// wildcard over a shorter one.
type Route struct {
	Hostname string
	Tunnel   [16]byte
}

// Binding ties a plain TCP or UDP listener to a tunnel. Service is the
// hostname sent in the stream request or flow open; the connector matches
// it against its ingress rules.
type Binding struct {
	Tunnel  [16]byte
	Service string
}

// routeTable is an immutable set of routes.
type routeTable struct {
	exact map[string][16]byte // lowercase hostname
	wild  map[string][16]byte // "example.test" for "*.example.test"
}

// SetRoutes atomically replaces the hostname routes. Hostnames are
// validated; the error names the first bad one, and the old routes stay.
// Two routes for the same hostname to different tunnels are an error.
func (s *Server) SetRoutes(routes []Route) error {
	t := &routeTable{exact: make(map[string][16]byte), wild: make(map[string][16]byte)}
	for i, r := range routes {
		name, wild, err := normalizeRoute(r.Hostname)
		if err != nil {
			return fmt.Errorf("edge: route %d: %w", i, err)
		}
		m := t.exact
		if wild {
			m = t.wild
		}
		if prev, ok := m[name]; ok && prev != r.Tunnel {
			return fmt.Errorf("edge: route %d: hostname %q routed to two tunnels (%s and %s)",
				i, r.Hostname, tunnelName(prev), tunnelName(r.Tunnel))
		}
		m[name] = r.Tunnel
	}
	s.routes.Store(t)
	return nil
}

// lookup returns the tunnel for host (an SNI, or a Host without its port).
func (t *routeTable) lookup(host string) ([16]byte, bool) {
	host = strings.TrimSuffix(host, ".")
	if host == "" || len(host) > 253 {
		return [16]byte{}, false
	}
	host = strings.ToLower(host)
	if id, ok := t.exact[host]; ok {
		return id, true
	}
	if len(t.wild) == 0 {
		return [16]byte{}, false
	}
	// Longest suffix first: "a.b.example.test" tries "b.example.test",
	// then "example.test", then "test".
	for i := 0; i < len(host); i++ {
		if host[i] == '.' && i > 0 {
			if id, ok := t.wild[host[i+1:]]; ok {
				return id, true
			}
		}
	}
	return [16]byte{}, false
}

// normalizeRoute validates a route hostname and returns it in lowercase
// without a trailing dot ("example.test" for "*.example.test", wild=true).
func normalizeRoute(h string) (name string, wild bool, err error) {
	name = strings.ToLower(strings.TrimSuffix(h, "."))
	if strings.HasPrefix(name, "*.") {
		wild, name = true, name[2:]
	}
	if err := checkDNSName(name); err != nil {
		return "", false, fmt.Errorf("bad hostname %q: %w (want \"app.example.test\" or \"*.example.test\")", h, err)
	}
	return name, wild, nil
}

func checkDNSName(name string) error {
	if name == "" {
		return errors.New("empty")
	}
	if len(name) > 253 {
		return errors.New("longer than 253 bytes")
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" {
			return errors.New("empty label")
		}
		if len(label) > 63 {
			return fmt.Errorf("label %q longer than 63 bytes", label)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with '-'", label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("label %q has invalid character %q", label, c)
			}
		}
	}
	return nil
}
