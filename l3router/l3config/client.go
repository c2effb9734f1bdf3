package l3config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// DefaultClientKeepalive is the PersistentKeepalive of client configs, in
// seconds: it keeps NAT mappings open so that LAN hosts can reach the
// client.
const DefaultClientKeepalive = 25

// Client is a standard WireGuard client's configuration in wg-quick(8)
// format, as `edge l3 client add` prints it: one interface with the
// client's virtual addresses and one peer, the edge.
//
//	[Interface]
//	PrivateKey = <base64>
//	Address = 100.96.0.2/32, fd6f:6e72:616d::2/128
//	DNS = 198.18.30.53
//	MTU = 1420
//
//	[Peer]
//	PublicKey = <the edge's>
//	Endpoint = edge.example.net:51820
//	AllowedIPs = 100.96.0.0/12, fd6f:6e72:616d::/48, 198.18.30.0/24
//	PersistentKeepalive = 25
type Client struct {
	// Name is the client's name on the edge (a comment in the file).
	Name string
	// PrivateKey is the client's key. If zero the file has a commented
	// placeholder instead, naming PublicKey: the user fills in the key
	// they generated themselves.
	PrivateKey Key
	// PublicKey is the client's public key (only named in the
	// placeholder comment; ParseClient derives it from PrivateKey).
	PublicKey Key
	// Addresses are the client's virtual addresses (/32, /128).
	Addresses []netip.Prefix
	// DNS are DNS server addresses or search domains; optional.
	DNS []string
	// MTU of the client's interface; 0 leaves wg-quick's default.
	MTU int
	// Edge is the client's one peer.
	EdgePublicKey Key
	Endpoint      string         // host:port
	AllowedIPs    []netip.Prefix // the pools and the connectors' subnets
	// Keepalive is PersistentKeepalive in seconds; 0 omits it.
	Keepalive int
}

// placeholder starts the commented PrivateKey line of a config printed
// for a client that brought its own key.
const placeholder = "# PrivateKey = "

// Marshal returns c in wg-quick format. It refuses a config that a
// WireGuard app would not take: no edge key or endpoint, no address, or
// neither a private nor a public key.
func (c *Client) Marshal() ([]byte, error) {
	switch {
	case c.EdgePublicKey.IsZero():
		return nil, errors.New("client config: edge public key missing")
	case c.Endpoint == "":
		return nil, errors.New("client config: endpoint missing (l3.endpoint in the edge config)")
	case len(c.Addresses) == 0:
		return nil, errors.New("client config: no address")
	case c.PrivateKey.IsZero() && c.PublicKey.IsZero():
		return nil, errors.New("client config: neither a private nor a public key")
	}
	for _, d := range c.DNS {
		if d == "" || strings.ContainsAny(d, ", \t\n#=") {
			return nil, fmt.Errorf("client config: DNS entry %q: want an address or a search domain", d)
		}
	}
	var b bytes.Buffer
	if c.Name != "" {
		fmt.Fprintf(&b, "# onramp L3 client %q: import this file into a WireGuard app, or run wg-quick up with it.\n", c.Name)
	}
	b.WriteString("[Interface]\n")
	if c.PrivateKey.IsZero() {
		fmt.Fprintf(&b, "%s<the private key of %v: the edge never had it; replace this line with PrivateKey = YOUR_KEY>\n", placeholder, c.PublicKey)
	} else {
		fmt.Fprintf(&b, "# It holds the client's private key: keep it secret.\nPrivateKey = %v\n", c.PrivateKey)
	}
	fmt.Fprintf(&b, "Address = %s\n", joinPrefixes(c.Addresses))
	if len(c.DNS) > 0 {
		fmt.Fprintf(&b, "DNS = %s\n", strings.Join(c.DNS, ", "))
	}
	if c.MTU > 0 {
		fmt.Fprintf(&b, "MTU = %d\n", c.MTU)
	}
	fmt.Fprintf(&b, "\n[Peer]\nPublicKey = %v\nEndpoint = %s\n", c.EdgePublicKey, c.Endpoint)
	if len(c.AllowedIPs) > 0 {
		fmt.Fprintf(&b, "AllowedIPs = %s\n", joinPrefixes(c.AllowedIPs))
	}
	if c.Keepalive > 0 {
		fmt.Fprintf(&b, "PersistentKeepalive = %d\n", c.Keepalive)
	}
	return b.Bytes(), nil
}

// QRText is a client's config as a QR code holds it: without its comment
// lines, for a smaller code. `edge l3 client add --qr` and the console's
// QR code both encode it.
func QRText(conf []byte) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(string(conf), "\n") {
		if !strings.HasPrefix(l, "#") {
			b.WriteString(l)
		}
	}
	return b.String()
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// ParseClient parses a wg-quick configuration with one [Interface] and one
// [Peer] section, the way wg-quick reads it: keys are case-insensitive,
// '#' starts a comment, list values are comma-separated. A missing
// PrivateKey is allowed if the file has the placeholder comment Marshal
// writes; its public key is then taken from that comment. Keys this
// package does not write are refused, naming the line.
func ParseClient(data []byte) (*Client, error) {
	c := &Client{}
	section := ""
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, placeholder+"<the private key of "); ok {
			k, _, _ := strings.Cut(rest, ":")
			pub, err := ParseKey(k)
			if err != nil {
				return nil, fmt.Errorf("line %d: placeholder: public key: %w", n, err)
			}
			c.PublicKey = pub
		}
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "[") {
			section = strings.ToLower(line)
			if section != "[interface]" && section != "[peer]" {
				return nil, fmt.Errorf("line %d: section %s: want [Interface] or [Peer]", n, line)
			}
			if seen[section] {
				return nil, fmt.Errorf("line %d: a second %s section", n, line)
			}
			seen[section] = true
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: %q is not key = value", n, line)
		}
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		if err := c.set(section, k, v); err != nil {
			return nil, fmt.Errorf("line %d: %s: %w", n, k, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	switch {
	case !seen["[interface]"] || !seen["[peer]"]:
		return nil, errors.New("want an [Interface] and a [Peer] section")
	case c.PrivateKey.IsZero() && c.PublicKey.IsZero():
		return nil, errors.New("[Interface]: PrivateKey missing")
	case c.EdgePublicKey.IsZero():
		return nil, errors.New("[Peer]: PublicKey missing")
	case len(c.Addresses) == 0:
		return nil, errors.New("[Interface]: Address missing")
	}
	if !c.PrivateKey.IsZero() {
		c.PublicKey = c.PrivateKey.PublicKey()
	}
	return c, nil
}

func (c *Client) set(section, k, v string) error {
	var err error
	switch section + k {
	case "[interface]privatekey":
		c.PrivateKey, err = ParseKey(v)
	case "[interface]address":
		c.Addresses, err = parsePrefixes(v)
	case "[interface]dns":
		for _, d := range strings.Split(v, ",") {
			c.DNS = append(c.DNS, strings.TrimSpace(d))
		}
	case "[interface]mtu":
		c.MTU, err = strconv.Atoi(v)
	case "[peer]publickey":
		c.EdgePublicKey, err = ParseKey(v)
	case "[peer]endpoint":
		if _, _, err = net.SplitHostPort(v); err == nil {
			c.Endpoint = v
		}
	case "[peer]allowedips":
		c.AllowedIPs, err = parsePrefixes(v)
	case "[peer]persistentkeepalive":
		c.Keepalive, err = strconv.Atoi(v)
	case "":
		return errors.New("outside a section")
	default:
		return fmt.Errorf("unknown key in %s", section)
	}
	return err
}

func parsePrefixes(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range strings.Split(v, ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}
