// Package edgeconfig reads the edge's YAML configuration: where it listens,
// which hostnames route to which tunnel, and which plain TCP and UDP ports
// are bound to a tunnel's service.
//
// It belongs to the edge binary and sits above both on-ramps: it may
// import the L4 (l4proxy) and L3 (l3router) packages for their types and
// defaults, and they know nothing of edge.yml; cmd/edge turns a Config into
// their options.
//
//	data: /var/lib/onramp-edge          # tunnel store, certificate, admin socket
//	log_level: info                     # debug, info, warn, error; --log-level, if given, wins
//	listen:
//	  tunnels: "[::]:7844"              # connectors: QUIC on UDP and HTTP/2 on TCP, same port
//	  tls: "[::]:443"                   # users: TLS routed by SNI, passed through untouched
//	  http: "[::]:80"                   # users: HTTP routed by Host
//	  metrics: "127.0.0.1:9100"         # Prometheus /metrics
//	  console: "127.0.0.1:8844"         # the web console; off a loopback address it needs console.tls_* and a password
//	console:                            # the web console (listen.console); see Console
//	  # password_hash: "$argon2id$v=19$m=65536,t=3,p=4$SALT$KEY" # `edge console passwd` writes it; none: one-time links only
//	  tls_cert: /etc/onramp/console.crt # both or neither: HTTPS
//	  tls_key: /etc/onramp/console.key
//	advertise: ["edge.example.test:7844"] # edge addresses written into tokens
//	routes:
//	  - {hostname: "*.office.example.test", tunnel: office}
//	  - {hostname: "shop.example.test", service: "tcp://198.51.100.20:443", proxy_protocol: v2} # direct: the edge dials the origin
//	bindings:
//	  - {listen: "tcp://[::]:2222", tunnel: office, service: ssh.office}
//	  - {listen: "udp://[::]:5353", tunnel: office, service: dns.office}
//	  - {listen: "tcp://[::]:5432", service: "tcp://198.51.100.21:5432"}                      # direct
//	relay: {strategy: auto, max_pipes: 4096} # TCP-to-TCP paths (direct routes and bindings): auto, splice, sockmap or copy
//	limits:                             # what users and strangers can make the edge hold; defaults shown
//	  maxConns: 20000                   # user connections (TCP, TLS, HTTP) open at once, all listeners
//	  maxConnsPerSource: 256            # the same from one IPv4 address or IPv6 /64
//	  headerTimeout: 10s                # to send a TLS ClientHello or an HTTP request head
//	  idleTimeout: 10m                  # a proxied connection with no byte either way is closed; 0s: never
//	  maxStreamsPerTunnel: 10000        # TCP/TLS/HTTP streams open per tunnel
//	  maxUDPFlowsPerTunnel: 10000       # UDP flows open per tunnel, apart from its streams
//	  udpNewFlowsPerSource: 100         # new UDP flows a second per source /24 (IPv4) or /64 (IPv6)
//	  udpNewFlowsPerTunnel: 1000        # new UDP flows a second per tunnel, all sources
//	  udpFlowIdle: 60s                  # a UDP flow silent this long is closed
//	  udpUnrepliedIdle: 10s             # ... or this long if the origin never answered it
//	  maxHandshakes: 1000               # connector handshakes not yet authenticated, per transport
//	  maxHandshakesPerSource: 32        # the same from one IPv4 address or IPv6 /64
//	  quicRetryAbove: 100               # QUIC validates source addresses (Retry) above this many
//	l3:                                 # the L3 on-ramp (WireGuard); see L3
//	  listen: "[::]:51820"              # every address, or one: "198.51.100.7:51820"
//	  address_reuse_delay: 24h
//	  max_staged_bytes: 16777216        # packets held for peers whose handshake is under way, all together
//	  steering: true                    # eBPF steering over the WireGuard sockets; false: the kernel's hash
//	  handshakes: {per_second: 2000, per_source_per_second: 20, per_source_burst: 5, max_sources: 16384}
//	quic_steering: true                 # one QUIC socket and Transport per core, steered by connection ID (eBPF); false: one
//	stream_spread: 0                    # a tunnel's new streams go to its first N live connections; 0: by its traffic (small streams: one per core; bulk: all); -1: all
//	xdp:                                # the XDP pre-filter of the UDP ports; see XDP
//	  interfaces: [eth0]                # the public interfaces; none: off
//	  per_source_per_second: 20         # WireGuard initiations and QUIC Initials per source /32 or /64 (burst per_source_burst: 5)
//	  unproven_per_second: 2000         # ... from all sources without a completed handshake (burst unproven_burst: 2000)
//	registry:                           # where the state is; none: data/edge.db (bbolt); see Registry
//	  etcd: {endpoints: ["https://etcd1.example.test:2379"], prefix: /onramp/}
//
// Every field is optional except what a feature needs; [Parse] fills the
// defaults and names the field of any error.
//
// A running edge re-reads its file on SIGHUP (systemctl reload): routes,
// bindings, listen.tls, listen.http, log_level, l3.acl and the user limits
// (all of limits but maxHandshakes, maxHandshakesPerSource and
// quicRetryAbove) change without a restart; a change of anything else is
// refused, naming the fields, and the running configuration stays. See
// cmd/edge's reload.go. Of the console, a reload applies
// console.password_hash (and ends every session when it changes);
// listen.console and console.tls_* need a restart.
package edgeconfig

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/onramp-net/onramp/cmd/edge/console/password"
	"github.com/onramp-net/onramp/dataplane/relay"
	"go.yaml.in/yaml/v3"
)

// Defaults.
const (
	DefaultData                = "/var/lib/onramp-edge"
	DefaultTunnels             = "[::]:7844"
	DefaultMaxStreamsPerTunnel = 10000
	DefaultUDPFlowIdle         = 60 * time.Second

	// The user connection limits; see package edge for the reasoning.
	DefaultMaxConns          = 20000
	DefaultMaxConnsPerSource = 256
	DefaultHeaderTimeout     = 10 * time.Second
	DefaultIdleTimeout       = 10 * time.Minute
	// The connector handshake limits; see package tunnel.
	DefaultMaxHandshakes          = 1000
	DefaultMaxHandshakesPerSource = 32
	DefaultQUICRetryAbove         = 100
)

// Defaults of the UDP limits.
const (
	DefaultMaxUDPFlowsPerTunnel = 10000
	DefaultUDPNewFlowsPerSource = 100
	DefaultUDPNewFlowsPerTunnel = 1000
	DefaultUDPUnrepliedIdle     = 10 * time.Second
)

// maxUDPRate bounds the UDP rates: the edge keeps them at nanosecond
// resolution.
const maxUDPRate = 1_000_000

// Config is a parsed edge configuration.
type Config struct {
	Data      string    `yaml:"data"`
	LogLevel  string    `yaml:"log_level"` // "" is the --log-level flag's default, info
	Listen    Listen    `yaml:"listen"`
	Console   Console   `yaml:"console"`
	Advertise []string  `yaml:"advertise"`
	Routes    []Route   `yaml:"routes"`
	Bindings  []Binding `yaml:"bindings"`
	Relay     Relay     `yaml:"relay"`
	Limits    Limits    `yaml:"limits"`
	L3        L3        `yaml:"l3"`
	XDP       XDP       `yaml:"xdp"`
	Registry  Registry  `yaml:"registry"`

	// QUICSteering runs the QUIC tunnel listener as one UDP socket and
	// quic-go Transport per core (GOMAXPROCS) on a SO_REUSEPORT group, an
	// eBPF program steering each datagram to the Transport of its
	// connection ID (dataplane/steer), so that a connector that changes
	// source port keeps its connection. Default true; false is one
	// socket. Without eBPF the edge says why once and runs one socket.
	QUICSteering *bool `yaml:"quic_steering"`

	// StreamSpread is how many of a tunnel's connections its new streams
	// and UDP flows are spread over, the oldest live ones; the others
	// stand by. 0 (the default) follows the tunnel's traffic: one per core
	// (GOMAXPROCS) while most of its recent streams are small, all of them
	// while most carry bulk (edge.Options.StreamSpread). -1 is all of them.
	StreamSpread int `yaml:"stream_spread"`
}

// Steering reports whether QUIC steering is on (the default).
func (c *Config) Steering() bool { return c.QUICSteering == nil || *c.QUICSteering }

// XDP is the pre-filter (dataplane/prefilter) in front of the edge's UDP
// ports, the QUIC tunnel listener and the WireGuard hub: an XDP program
// on the public interfaces that drops datagrams to those ports which
// cannot be valid before they reach a socket. Where it cannot load or
// attach (no eBPF, no capability), the edge says so once and runs
// without it.
type XDP struct {
	// Interfaces are the network interfaces the edge's UDP ports are
	// reached on. None (the default): the pre-filter is off.
	Interfaces []string `yaml:"interfaces"`
	// The pre-filter's limits on handshake openers (WireGuard
	// initiations, QUIC Initials), a second, 0 for the default: from one
	// source, an IPv4 address or IPv6 /64 (PerSourcePerSecond, burst
	// PerSourceBurst); and from all sources the edge has not proven (by
	// a completed WireGuard handshake, or a connector connection that
	// authenticated), together (UnprovenPerSecond, burst UnprovenBurst).
	PerSourcePerSecond int `yaml:"per_source_per_second"`
	PerSourceBurst     int `yaml:"per_source_burst"`
	UnprovenPerSecond  int `yaml:"unproven_per_second"`
	UnprovenBurst      int `yaml:"unproven_burst"`
}

// Defaults of the XDP pre-filter's limits: the per-source limit of the
// WireGuard device under load (kernel WireGuard's), a ceiling of its
// handshake budget.
const (
	DefaultXDPPerSourcePerSecond = 20
	DefaultXDPPerSourceBurst     = 5
	DefaultXDPUnprovenPerSecond  = 2000
	DefaultXDPUnprovenBurst      = 2000
)

// WithDefaults returns x with its zero limits set to their defaults.
func (x XDP) WithDefaults() XDP {
	for _, f := range []struct {
		v   *int
		def int
	}{
		{&x.PerSourcePerSecond, DefaultXDPPerSourcePerSecond}, {&x.PerSourceBurst, DefaultXDPPerSourceBurst},
		{&x.UnprovenPerSecond, DefaultXDPUnprovenPerSecond}, {&x.UnprovenBurst, DefaultXDPUnprovenBurst},
	} {
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	return x
}

// Listen holds the listening addresses; an empty one is off.
type Listen struct {
	Tunnels string `yaml:"tunnels"`
	TLS     string `yaml:"tls"`
	HTTP    string `yaml:"http"`
	Metrics string `yaml:"metrics"`
	// Console is the web console's address (host:port); "": off. Off a
	// loopback address it needs Console's TLS files and password.
	Console string `yaml:"console"`
}

// Console configures the web console (listen.console).
type Console struct {
	// PasswordHash is the login password's hash, as `edge console
	// passwd` writes it; "": password login off (one-time links only).
	PasswordHash string `yaml:"password_hash"`
	// TLSCert and TLSKey are PEM files: the console answers HTTPS.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
}

// Route sends users whose SNI or Host matches Hostname to Tunnel (a name)
// or, without a tunnel, directly to the origin Service names
// ("tcp://host:port"), which the edge dials itself.
type Route struct {
	Hostname string `yaml:"hostname"`
	Tunnel   string `yaml:"tunnel"`
	Service  string `yaml:"service"`
	// ProxyProtocol "v2" sends the origin of a direct route a PROXY
	// protocol v2 header first, so that it sees the user's address.
	ProxyProtocol string `yaml:"proxy_protocol"`
}

// Binding binds a plain TCP or UDP listener to a tunnel's service or,
// without a tunnel, a TCP listener directly to the origin Service names
// ("tcp://host:port").
type Binding struct {
	Listen        string `yaml:"listen"` // tcp://host:port or udp://host:port
	Tunnel        string `yaml:"tunnel"`
	Service       string `yaml:"service"`
	ProxyProtocol string `yaml:"proxy_protocol"` // "v2": as a Route's
}

// Network returns "tcp" or "udp" and the host:port of a validated binding.
func (b Binding) Network() (network, addr string) {
	network, addr, _ = strings.Cut(b.Listen, "://")
	return network, addr
}

// Direct reports whether the binding names an origin, not a tunnel.
func (b Binding) Direct() bool { return b.Tunnel == "" }

// Direct reports whether the route names an origin, not a tunnel.
func (r Route) Direct() bool { return r.Tunnel == "" }

// Origin returns the host:port of a validated direct route's or binding's
// service.
func Origin(service string) string { return strings.TrimPrefix(service, "tcp://") }

// Relay configures the engine of the TCP-to-TCP paths (direct routes and
// bindings).
type Relay struct {
	// Strategy is auto (the default: the fastest that passes its
	// self-test here), splice, sockmap or copy.
	Strategy string `yaml:"strategy"`
	// MaxPipes caps the splice pipes in use at once (default 4096); past
	// it a connection copies in user space.
	MaxPipes int `yaml:"max_pipes"`
}

// checkOrigin validates a direct service: tcp://host:port with a host.
func checkOrigin(s string) error {
	addr, ok := strings.CutPrefix(s, "tcp://")
	if !ok {
		return fmt.Errorf("%q: a direct origin is tcp://host:port", s)
	}
	if err := checkHostPort(addr); err != nil {
		return err
	}
	if h, _, _ := net.SplitHostPort(addr); h == "" {
		return fmt.Errorf("%q names no host", s)
	}
	return nil
}

// checkProxyProtocol validates a proxy_protocol value for a route or
// binding, direct or not.
func checkProxyProtocol(v string, direct bool) error {
	switch v {
	case "":
		return nil
	case "v2":
		if !direct {
			return errors.New("v2 is for direct origins (service: tcp://host:port, no tunnel); a tunnel's origin is the connector's")
		}
		return nil
	}
	return fmt.Errorf("%q: want v2 or nothing", v)
}

// Limits bounds what users, and strangers, may make the edge hold. A zero
// or missing value is the default, except IdleTimeout: missing is the
// default, 0s turns it off.
type Limits struct {
	MaxStreamsPerTunnel int      `yaml:"maxStreamsPerTunnel"`
	IdleTimeout         Duration `yaml:"idleTimeout"`

	// UDP flows. The rates are new flows per second, with a burst of one
	// second's worth; a source is its /24 (IPv4) or /64 (IPv6).
	// UDPUnrepliedIdle, the idle timeout of a flow the origin never
	// answered, is at most UDPFlowIdle.
	UDPFlowIdle          Duration `yaml:"udpFlowIdle"`
	MaxUDPFlowsPerTunnel int      `yaml:"maxUDPFlowsPerTunnel"`
	UDPNewFlowsPerSource int      `yaml:"udpNewFlowsPerSource"`
	UDPNewFlowsPerTunnel int      `yaml:"udpNewFlowsPerTunnel"`
	UDPUnrepliedIdle     Duration `yaml:"udpUnrepliedIdle"`

	// User connections (TCP, TLS, HTTP), over all user listeners; a source
	// is an IPv4 address or an IPv6 /64.
	MaxConns          int      `yaml:"maxConns"`
	MaxConnsPerSource int      `yaml:"maxConnsPerSource"`
	HeaderTimeout     Duration `yaml:"headerTimeout"`

	// Connector handshakes not yet authenticated, per tunnel transport.
	MaxHandshakes          int `yaml:"maxHandshakes"`
	MaxHandshakesPerSource int `yaml:"maxHandshakesPerSource"`
	QUICRetryAbove         int `yaml:"quicRetryAbove"`
}

// Duration is a time.Duration written as "30s", "5m".
type Duration time.Duration

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration like 30s or 5m", n.Line, n.Value)
	}
	if v < 0 {
		return fmt.Errorf("line %d: %q is negative", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// Default returns the configuration used without a file: the tunnel
// listener on [::]:7844, no user listeners.
func Default() *Config {
	c := newConfig()
	c.fill()
	return c
}

// newConfig returns the configuration a file is decoded into: it holds the
// defaults that a zero in the file must not replace.
func newConfig() *Config {
	c := &Config{}
	c.Limits.IdleTimeout = Duration(DefaultIdleTimeout)
	return c
}

// Load reads and parses the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("edge config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse parses and validates a configuration. Unknown fields and a second
// YAML document are errors.
func Parse(data []byte) (*Config, error) {
	c := newConfig()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	// An empty document (io.EOF) is the default configuration.
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("edge config: %w", err)
	}
	// A second document would be ignored: refuse it rather than run a
	// configuration that is not the whole file.
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, fmt.Errorf("edge config: %w", err)
		}
		return nil, fmt.Errorf("edge config: line %d: more than one YAML document", extra.Line)
	}
	c.fill()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Config) fill() {
	if c.Data == "" {
		c.Data = DefaultData
	}
	if c.Listen.Tunnels == "" {
		c.Listen.Tunnels = DefaultTunnels
	}
	if c.Limits.MaxStreamsPerTunnel == 0 {
		c.Limits.MaxStreamsPerTunnel = DefaultMaxStreamsPerTunnel
	}
	if c.Limits.UDPFlowIdle == 0 {
		c.Limits.UDPFlowIdle = Duration(DefaultUDPFlowIdle)
	}
	l := &c.Limits
	for _, f := range []struct {
		v   *int
		def int
	}{
		{&l.MaxUDPFlowsPerTunnel, DefaultMaxUDPFlowsPerTunnel},
		{&l.UDPNewFlowsPerSource, DefaultUDPNewFlowsPerSource},
		{&l.UDPNewFlowsPerTunnel, DefaultUDPNewFlowsPerTunnel},
		{&l.MaxConns, DefaultMaxConns},
		{&l.MaxConnsPerSource, DefaultMaxConnsPerSource},
		{&l.MaxHandshakes, DefaultMaxHandshakes},
		{&l.MaxHandshakesPerSource, DefaultMaxHandshakesPerSource},
		{&l.QUICRetryAbove, DefaultQUICRetryAbove},
	} {
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if l.UDPUnrepliedIdle == 0 {
		l.UDPUnrepliedIdle = Duration(min(DefaultUDPUnrepliedIdle, time.Duration(l.UDPFlowIdle)))
	}
	if l.HeaderTimeout == 0 {
		l.HeaderTimeout = Duration(DefaultHeaderTimeout)
	}
	c.fillL3()
}

// Validate checks every field; the error names the first bad one.
func (c *Config) Validate() error {
	switch c.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("edge config: log_level: %q: want debug, info, warn or error", c.LogLevel)
	}
	for _, f := range []struct{ name, v string }{
		{"listen.tunnels", c.Listen.Tunnels},
		{"listen.tls", c.Listen.TLS},
		{"listen.http", c.Listen.HTTP},
		{"listen.metrics", c.Listen.Metrics},
		{"listen.console", c.Listen.Console},
	} {
		if f.v == "" {
			continue
		}
		if err := checkHostPort(f.v); err != nil {
			return fmt.Errorf("edge config: %s: %w", f.name, err)
		}
	}
	for _, f := range []struct {
		name string
		v    int
	}{
		{"per_source_per_second", c.XDP.PerSourcePerSecond}, {"per_source_burst", c.XDP.PerSourceBurst},
		{"unproven_per_second", c.XDP.UnprovenPerSecond}, {"unproven_burst", c.XDP.UnprovenBurst},
	} {
		if f.v < 0 || f.v > 1e9 {
			return fmt.Errorf("edge config: xdp.%s: %d: want 0 (the default) to 1000000000", f.name, f.v)
		}
	}
	for i, name := range c.XDP.Interfaces {
		if name == "" || len(name) > 15 || strings.ContainsAny(name, "/ \t") {
			return fmt.Errorf("edge config: xdp.interfaces[%d]: %q is no interface name", i, name)
		}
	}
	for i, a := range c.Advertise {
		if err := checkHostPort(a); err != nil {
			return fmt.Errorf("edge config: advertise[%d]: %w", i, err)
		}
		if h, _, _ := net.SplitHostPort(a); h == "" {
			return fmt.Errorf("edge config: advertise[%d]: %q needs a host connectors can reach", i, a)
		}
	}
	for i, r := range c.Routes {
		if err := CheckPattern(r.Hostname); err != nil {
			return fmt.Errorf("edge config: routes[%d].hostname: %w", i, err)
		}
		switch {
		case r.Tunnel == "" && r.Service == "":
			return fmt.Errorf("edge config: routes[%d]: want a tunnel, or a service tcp://host:port the edge reaches itself", i)
		case r.Tunnel != "" && r.Service != "":
			return fmt.Errorf("edge config: routes[%d]: a tunnel or a direct service, not both (the tunnel's connector picks the origin by its ingress rules)", i)
		case r.Tunnel != "":
			if err := checkTunnelName(r.Tunnel); err != nil {
				return fmt.Errorf("edge config: routes[%d].tunnel: %w", i, err)
			}
		default:
			if err := checkOrigin(r.Service); err != nil {
				return fmt.Errorf("edge config: routes[%d].service: %w", i, err)
			}
		}
		if err := checkProxyProtocol(r.ProxyProtocol, r.Direct()); err != nil {
			return fmt.Errorf("edge config: routes[%d].proxy_protocol: %w", i, err)
		}
	}
	for i, b := range c.Bindings {
		network, addr, ok := strings.Cut(b.Listen, "://")
		if !ok || (network != "tcp" && network != "udp") {
			return fmt.Errorf("edge config: bindings[%d].listen: %q: want tcp://host:port or udp://host:port", i, b.Listen)
		}
		if err := checkHostPort(addr); err != nil {
			return fmt.Errorf("edge config: bindings[%d].listen: %w", i, err)
		}
		if b.Direct() {
			if network != "tcp" {
				return fmt.Errorf("edge config: bindings[%d]: a direct origin (no tunnel) is for tcp:// listeners; UDP goes through a tunnel", i)
			}
			if err := checkOrigin(b.Service); err != nil {
				return fmt.Errorf("edge config: bindings[%d].service: %w", i, err)
			}
		} else {
			if err := checkTunnelName(b.Tunnel); err != nil {
				return fmt.Errorf("edge config: bindings[%d].tunnel: %w", i, err)
			}
			if b.Service == "" || len(b.Service) > 255 {
				return fmt.Errorf("edge config: bindings[%d].service: want a name of 1 to 255 bytes, have %d", i, len(b.Service))
			}
		}
		if err := checkProxyProtocol(b.ProxyProtocol, b.Direct()); err != nil {
			return fmt.Errorf("edge config: bindings[%d].proxy_protocol: %w", i, err)
		}
	}
	if _, err := relay.ParseStrategy(c.Relay.Strategy); err != nil {
		return fmt.Errorf("edge config: relay.strategy: %w", err)
	}
	if c.Relay.MaxPipes < 0 || c.Relay.MaxPipes > 1<<20 {
		return fmt.Errorf("edge config: relay.max_pipes: %d: want 0 (the default, %d) to %d", c.Relay.MaxPipes, relay.DefaultMaxPipes, 1<<20)
	}
	if c.StreamSpread < -1 {
		return fmt.Errorf("edge config: stream_spread: %d: want a number of connections, 0 (one per core) or -1 (all)", c.StreamSpread)
	}
	l := &c.Limits
	for _, f := range []struct {
		name string
		v    int
	}{
		{"maxStreamsPerTunnel", l.MaxStreamsPerTunnel},
		{"maxUDPFlowsPerTunnel", l.MaxUDPFlowsPerTunnel},
		{"udpNewFlowsPerSource", l.UDPNewFlowsPerSource},
		{"udpNewFlowsPerTunnel", l.UDPNewFlowsPerTunnel},
		{"maxConns", l.MaxConns},
		{"maxConnsPerSource", l.MaxConnsPerSource},
		{"maxHandshakes", l.MaxHandshakes},
		{"maxHandshakesPerSource", l.MaxHandshakesPerSource},
		{"quicRetryAbove", l.QUICRetryAbove},
	} {
		if f.v < 0 {
			return fmt.Errorf("edge config: limits.%s: %d is negative", f.name, f.v)
		}
	}
	for _, f := range []struct {
		name string
		v    int
	}{
		{"udpNewFlowsPerSource", l.UDPNewFlowsPerSource},
		{"udpNewFlowsPerTunnel", l.UDPNewFlowsPerTunnel},
	} {
		if f.v > maxUDPRate {
			return fmt.Errorf("edge config: limits.%s: %d new flows a second is more than %d", f.name, f.v, maxUDPRate)
		}
	}
	if l.UDPUnrepliedIdle > l.UDPFlowIdle {
		return fmt.Errorf("edge config: limits.udpUnrepliedIdle: %v is longer than limits.udpFlowIdle (%v)",
			time.Duration(l.UDPUnrepliedIdle), time.Duration(l.UDPFlowIdle))
	}
	if l.MaxConnsPerSource > l.MaxConns {
		return fmt.Errorf("edge config: limits.maxConnsPerSource: %d is above limits.maxConns (%d)", l.MaxConnsPerSource, l.MaxConns)
	}
	if l.MaxHandshakesPerSource > l.MaxHandshakes {
		return fmt.Errorf("edge config: limits.maxHandshakesPerSource: %d is above limits.maxHandshakes (%d)", l.MaxHandshakesPerSource, l.MaxHandshakes)
	}
	if err := c.validateRegistry(); err != nil {
		return err
	}
	if err := c.validateConsole(); err != nil {
		return err
	}
	return c.validateL3()
}

// validateConsole checks the console's settings, and that a console off
// loopback has TLS and a password (the console's own start checks that
// too; here a reload is refused as well).
func (c *Config) validateConsole() error {
	k := &c.Console
	if (k.TLSCert == "") != (k.TLSKey == "") {
		return errors.New("edge config: console.tls_cert and console.tls_key: set both (HTTPS) or neither")
	}
	if k.PasswordHash != "" {
		if err := password.Check(k.PasswordHash); err != nil {
			return fmt.Errorf("edge config: console.password_hash: %w", err)
		}
	}
	addr := c.Listen.Console
	if addr == "" || Loopback(addr) {
		return nil
	}
	var missing []string
	if k.TLSCert == "" {
		missing = append(missing, "console.tls_cert and console.tls_key")
	}
	if k.PasswordHash == "" {
		missing = append(missing, "console.password_hash (`edge console passwd`)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("edge config: listen.console %s is not a loopback address: it needs %s (or listen on 127.0.0.1 or [::1])",
			addr, strings.Join(missing, " and "))
	}
	return nil
}

// Loopback reports whether addr (host:port) listens on loopback only
// ("localhost" or a loopback address): the console's test of exposure.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q: want host:port ([v6]:port for IPv6): %v", s, err)
	}
	if strings.ContainsAny(host, " /") {
		return fmt.Errorf("%q: bad host %q", s, host)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%q: port %q is not a number 0-65535", s, port)
	}
	return nil
}

// checkTunnelName follows the store's rule: 1-63 of [a-z0-9-].
func checkTunnelName(n string) error {
	if n == "" || len(n) > 63 {
		return fmt.Errorf("tunnel name %q: want 1 to 63 characters", n)
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return fmt.Errorf("tunnel name %q: only a-z, 0-9 and - are allowed", n)
		}
	}
	return nil
}

// CheckPattern validates a route hostname: an exact DNS name or "*." and a
// DNS name.
func CheckPattern(p string) error {
	name := strings.TrimPrefix(p, "*.")
	if name == "" {
		return fmt.Errorf("%q: empty hostname", p)
	}
	if len(name) > 253 {
		return fmt.Errorf("%q: longer than 253 bytes", p)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("%q: empty or over-long label", p)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("%q: %q is not allowed in a hostname (a wildcard must be the whole first label: *.example.test)", p, r)
			}
		}
	}
	return nil
}
