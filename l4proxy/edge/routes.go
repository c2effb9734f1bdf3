package edge

import (
	"errors"
	"fmt"
	"maps"
	"strings"
)

// Route sends users whose TLS SNI or HTTP Host matches Hostname to a tunnel
// or, for a direct route, to an origin the edge dials itself.
// Hostname is exact ("app.example.test") or a leading wildcard
// ("*.example.test": any deeper subdomain, not the apex); matching is
// case-insensitive. An exact route wins over a wildcard, and a longer
// wildcard over a shorter one.
type Route struct {
	Hostname string
	// Tunnel is the tunnel's name, resolved to its ID ([Server.SetTunnels])
	// for each user: a tunnel deleted and created again under the name is
	// served by the route at once.
	Tunnel string
	// Origin, set instead of Tunnel, makes the route direct: the edge
	// dials Origin ("host:port") over TCP, writes the bytes it read (the
	// ClientHello, the request head) and relays the rest of the
	// connection with the relay engine ([Options.Relay]).
	Origin string
	// ProxyProtocol (direct routes) sends the origin a PROXY protocol v2
	// header first, with the user's address and the address it reached.
	ProxyProtocol bool
}

// Binding ties a plain TCP or UDP listener to a tunnel's service, or a TCP
// listener directly to an origin.
type Binding struct {
	// Tunnel is the tunnel's name, resolved as a Route's is; while no
	// tunnel has the name the binding's users find the tunnel offline.
	Tunnel string
	// Service is the hostname sent in the stream request or flow open; the
	// connector matches it against its ingress rules.
	Service string
	// Origin and ProxyProtocol, set instead of Tunnel and Service, make
	// the binding direct, as a Route's do (TCP only).
	Origin        string
	ProxyProtocol bool
}

// target is where a route sends its users.
type target struct {
	tunnel        string // a tunnel's name, or
	origin        string // a direct origin, host:port
	proxyProtocol bool
}

// routeTable is an immutable set of routes, hostname to target.
type routeTable struct {
	exact map[string]target // lowercase hostname
	wild  map[string]target // "example.test" for "*.example.test"
}

// SetRoutes atomically replaces the hostname routes. Hostnames are
// validated; the error names the first bad one, and the old routes stay.
// Two routes for the same hostname to different targets are an error.
// A connection already routed keeps its target: the routes are looked up
// once per connection, by the SNI or the first request's Host.
func (s *Server) SetRoutes(routes []Route) error {
	t, err := newRouteTable(routes)
	if err != nil {
		return err
	}
	s.routes.Store(t)
	return nil
}

// newRouteTable validates routes and returns their table.
func newRouteTable(routes []Route) (*routeTable, error) {
	t := &routeTable{exact: make(map[string]target), wild: make(map[string]target)}
	for i, r := range routes {
		name, wild, err := normalizeRoute(r.Hostname)
		if err != nil {
			return nil, fmt.Errorf("edge: route %d: %w", i, err)
		}
		if (r.Tunnel == "") == (r.Origin == "") {
			return nil, fmt.Errorf("edge: route %d: want a tunnel or an origin", i)
		}
		if r.ProxyProtocol && r.Origin == "" {
			return nil, fmt.Errorf("edge: route %d: a PROXY header is for direct origins", i)
		}
		m := t.exact
		if wild {
			m = t.wild
		}
		tg := target{tunnel: r.Tunnel, origin: r.Origin, proxyProtocol: r.ProxyProtocol}
		if prev, ok := m[name]; ok && prev != tg {
			return nil, fmt.Errorf("edge: route %d: hostname %q routed twice (to %s and %s)",
				i, r.Hostname, prev, tg)
		}
		m[name] = tg
	}
	return t, nil
}

func (t target) String() string {
	if t.tunnel != "" {
		return fmt.Sprintf("tunnel %q", t.tunnel)
	}
	return fmt.Sprintf("origin %s", t.origin)
}

// SetTunnels atomically replaces the table that resolves the tunnel names
// of routes and bindings to tunnel IDs. Call it with every tunnel after
// each change of the set (create, delete): from then on new users of a
// deleted tunnel find it offline, and those of a tunnel created again under
// its name reach the new one. Streams and flows already open stay on the
// tunnel they were opened on. The map is copied.
func (s *Server) SetTunnels(ids map[string][16]byte) {
	m := maps.Clone(ids)
	s.names.Store(&m)
}

// tunnelNamed returns the entry of the tunnel called name now, or
// s.noTunnel, which never has a connection, if no tunnel has that name.
func (s *Server) tunnelNamed(name string) *tunnelEntry {
	if id, ok := (*s.names.Load())[name]; ok {
		return s.entry(id)
	}
	return s.noTunnel
}

// lookup returns the target for host (an SNI, or a Host without its
// port).
func (t *routeTable) lookup(host string) (target, bool) {
	host = strings.TrimSuffix(host, ".")
	if host == "" || len(host) > 253 {
		return target{}, false
	}
	host = strings.ToLower(host)
	if tg, ok := t.exact[host]; ok {
		return tg, true
	}
	if len(t.wild) == 0 {
		return target{}, false
	}
	// Longest suffix first: "a.b.example.test" tries "b.example.test",
	// then "example.test", then "test".
	for i := 0; i < len(host); i++ {
		if host[i] == '.' && i > 0 {
			if tg, ok := t.wild[host[i+1:]]; ok {
				return tg, true
			}
		}
	}
	return target{}, false
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
