package l3config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"
)

// Connector defaults.
const (
	DefaultMTU       = 1420 // as wireguard-go's device.DefaultMTU
	MinMTU           = 1280
	MaxMTU           = 65535
	DefaultInterface = "onr0"
	DefaultKeepalive = 25 * time.Second
	// DefaultKeyFile is where `connector l3 init` writes the connector's
	// private key and what the edge names in l3.yml unless told another
	// path.
	DefaultKeyFile = "/etc/onramp/l3.key"
)

// Connector is the configuration of `connector l3 run` (l3.yml).
//
//	name: site-a
//	privateKeyFile: /etc/onramp/l3.key   # or privateKey: <base64> inline
//	addresses: [198.18.96.2/32, fd00:96::2/128]
//	interface: onr0
//	mtu: 1420
//	listenPort: 0
//	edge:
//	  publicKey: <base64>
//	  endpoint: edge.example.net:51820   # or, several edges sharing the key:
//	  # endpoints: [edge1.example.net:51820, edge2.example.net:51820]
//	  keepalive: 25s
//	subnets: [198.18.30.0/24, fd00:30::/64]
//	routes: [198.18.96.0/20, fd00:96::/48]
//	forwarding: true
type Connector struct {
	// Name is the connector's name on the edge (informational here).
	Name string `yaml:"name"`
	// PrivateKeyFile names the file holding the connector's WireGuard
	// private key (base64, as `wg genkey` and `connector l3 init` write
	// it); a relative path is relative to the l3.yml's directory. It is
	// what the edge prints: the connector makes its own key and the edge
	// never has it.
	PrivateKeyFile string `yaml:"privateKeyFile,omitempty"`
	// PrivateKey is the connector's WireGuard private key: read from
	// PrivateKeyFile by [LoadConnector], or written inline in l3.yml
	// (the form edges before connector-made keys printed; still read).
	PrivateKey Key `yaml:"privateKey,omitempty"`
	// Addresses are the connector's own virtual addresses, set on its TUN:
	// host prefixes (/32, /128) from the edge's pools.
	Addresses []netip.Prefix `yaml:"addresses"`
	// Interface names the TUN device (DefaultInterface if empty).
	Interface string `yaml:"interface"`
	// MTU of the TUN device (DefaultMTU if 0).
	MTU int `yaml:"mtu"`
	// ListenPort is the WireGuard UDP port; 0 picks one (the connector
	// only dials out, so the port does not matter).
	ListenPort int `yaml:"listenPort"`
	// Edge is the one peer: the edge's WireGuard device.
	Edge EdgePeer `yaml:"edge"`
	// Subnets are the private subnets this connector advertises; the edge
	// routes packets for them here. The connector forwards them to its LAN.
	Subnets []netip.Prefix `yaml:"subnets"`
	// Routes are installed through the TUN: the edge's client pools, and
	// other connectors' subnets for site to site.
	Routes []netip.Prefix `yaml:"routes"`
	// Forwarding enables IPv4 and IPv6 forwarding on the host (default
	// true): LAN hosts reach clients through the connector.
	Forwarding *bool `yaml:"forwarding"`
}

// EdgePeer is the edge as the connector's WireGuard peer: one edge, or
// several edges that share the key and the registry, the connector
// keeping a session with each.
type EdgePeer struct {
	PublicKey Key `yaml:"publicKey"`
	// Endpoint is the edge's host:port.
	Endpoint string `yaml:"endpoint,omitempty"`
	// Endpoints are the host:port of each edge sharing the key (after
	// Endpoint, if both are set). Replies to a client go back through the
	// edge its packets came through; other traffic through the first
	// edge that answers.
	Endpoints []string `yaml:"endpoints,omitempty"`
	Keepalive Duration `yaml:"keepalive"`
}

// All returns the edge endpoints: Endpoint, then Endpoints.
func (e EdgePeer) All() []string {
	var all []string
	if e.Endpoint != "" {
		all = append(all, e.Endpoint)
	}
	return append(all, e.Endpoints...)
}

// Equal reports whether e and o are the same peer at the same endpoints.
func (e EdgePeer) Equal(o EdgePeer) bool {
	return e.PublicKey == o.PublicKey && e.Keepalive == o.Keepalive && slices.Equal(e.All(), o.All())
}

// MaxEdgeEndpoints is the most edge endpoints a connector takes.
const MaxEdgeEndpoints = 16

// Duration is a time.Duration written as "25s".
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil || v < 0 {
		return fmt.Errorf("%q is not a duration like 25s", b)
	}
	*d = Duration(v)
	return nil
}

// LoadConnector reads and validates a connector configuration file and
// reads the private key from the file privateKeyFile names.
func LoadConnector(path string) (*Connector, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := ParseConnector(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if c.PrivateKeyFile != "" {
		if c.PrivateKey, err = ReadKeyFile(c.KeyPath(path)); err != nil {
			return nil, fmt.Errorf("%s: privateKeyFile: %w", path, err)
		}
	}
	return c, nil
}

// KeyPath returns the path of the private key file of the l3.yml at
// config: PrivateKeyFile, relative to config's directory unless absolute.
// It is empty if the key is inline.
func (c *Connector) KeyPath(config string) string {
	if c.PrivateKeyFile == "" || filepath.IsAbs(c.PrivateKeyFile) {
		return c.PrivateKeyFile
	}
	return filepath.Join(filepath.Dir(config), c.PrivateKeyFile)
}

// ParseConnector parses and validates a connector configuration. Unknown
// fields and a second YAML document are refused. The key file that
// privateKeyFile names is not read: [LoadConnector] does.
func ParseConnector(data []byte) (*Connector, error) {
	c := &Connector{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	// A second document would be ignored: refuse it rather than run a
	// configuration that is not the whole file.
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, fmt.Errorf("parse: %w", err)
		}
		return nil, fmt.Errorf("parse: line %d: more than one YAML document", extra.Line)
	}
	if !c.PrivateKey.IsZero() && c.PrivateKeyFile != "" {
		return nil, errors.New("privateKey and privateKeyFile: give the key inline or name its file, not both")
	}
	c.fill()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Connector) fill() {
	if c.Interface == "" {
		c.Interface = DefaultInterface
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.Edge.Keepalive == 0 {
		c.Edge.Keepalive = Duration(DefaultKeepalive)
	}
	if c.Forwarding == nil {
		t := true
		c.Forwarding = &t
	}
}

// Validate checks c, naming the field at fault.
func (c *Connector) Validate() error {
	switch {
	case c.PrivateKey.IsZero() && c.PrivateKeyFile == "":
		return errors.New("privateKeyFile: missing (the file connector l3 init --key wrote)")
	case c.Edge.PublicKey.IsZero():
		return errors.New("edge.publicKey: missing")
	case len(c.Edge.All()) == 0:
		return errors.New("edge.endpoint: missing (host:port of the edge's WireGuard listener)")
	case len(c.Edge.All()) > MaxEdgeEndpoints:
		return fmt.Errorf("edge.endpoints: %d edges, at most %d", len(c.Edge.All()), MaxEdgeEndpoints)
	case len(c.Interface) > 15:
		return fmt.Errorf("interface: %q is longer than 15 characters", c.Interface)
	case c.MTU < MinMTU || c.MTU > MaxMTU:
		return fmt.Errorf("mtu: %d is outside %d-%d", c.MTU, MinMTU, MaxMTU)
	case c.ListenPort < 0 || c.ListenPort > 65535:
		return fmt.Errorf("listenPort: %d is not a port", c.ListenPort)
	}
	fields := make([]string, 0, len(c.Edge.All()))
	if c.Edge.Endpoint != "" {
		fields = append(fields, "edge.endpoint")
	}
	for i := range c.Edge.Endpoints {
		fields = append(fields, fmt.Sprintf("edge.endpoints[%d]", i))
	}
	for i, ep := range c.Edge.All() {
		if _, port, err := net.SplitHostPort(ep); err != nil {
			return fmt.Errorf("%s: %q is not host:port", fields[i], ep)
		} else if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return fmt.Errorf("%s: %q has no valid port", fields[i], ep)
		}
		if slices.Contains(c.Edge.All()[:i], ep) {
			return fmt.Errorf("%s: %q is named twice: each endpoint is one edge", fields[i], ep)
		}
	}
	for i, a := range c.Addresses {
		if !a.IsValid() || a.Bits() != a.Addr().BitLen() {
			return fmt.Errorf("addresses[%d]: %s is not a host prefix (/32 or /128)", i, a)
		}
	}
	if err := checkPrefixes("subnets", c.Subnets); err != nil {
		return err
	}
	if err := checkPrefixes("routes", c.Routes); err != nil {
		return err
	}
	for i, r := range c.Routes {
		for j, s := range c.Subnets {
			if r.Overlaps(s) {
				return fmt.Errorf("routes[%d]: %s overlaps subnets[%d] %s: a prefix is either behind this connector or reached through the edge", i, r, j, s)
			}
		}
	}
	return nil
}

// checkPrefixes refuses invalid, non-canonical and overlapping prefixes.
func checkPrefixes(field string, ps []netip.Prefix) error {
	for i, p := range ps {
		if !p.IsValid() {
			return fmt.Errorf("%s[%d]: invalid prefix", field, i)
		}
		if p != p.Masked() {
			return fmt.Errorf("%s[%d]: %s has host bits set (did you mean %s?)", field, i, p, p.Masked())
		}
		for j := range i {
			if p.Overlaps(ps[j]) {
				return fmt.Errorf("%s[%d]: %s overlaps %s[%d] %s", field, i, p, field, j, ps[j])
			}
		}
	}
	return nil
}

// Marshal returns c as YAML, headed by a comment. With PrivateKeyFile set
// the key is not written inline, even if loaded.
func (c *Connector) Marshal() ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# onramp L3 connector %q: run it with\n#   connector l3 run --config THIS_FILE\n", c.Name)
	out := *c
	if out.PrivateKeyFile != "" {
		out.PrivateKey = Key{}
		fmt.Fprintf(&b, "# Its private key is in %s (connector l3 init --key made it there).\n", out.PrivateKeyFile)
	} else {
		b.WriteString("# It holds the connector's private key: keep it secret.\n")
	}
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&out); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
