package l3config

import (
	"net/netip"
	"strings"
	"testing"
)

func testConnector(t *testing.T) *Connector {
	t.Helper()
	priv, err := GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	edge, _ := GeneratePrivateKey()
	return &Connector{
		Name:       "site-a",
		PrivateKey: priv,
		Addresses:  []netip.Prefix{netip.MustParsePrefix("198.18.96.2/32"), netip.MustParsePrefix("fd00:96::2/128")},
		Edge:       EdgePeer{PublicKey: edge.PublicKey(), Endpoint: "198.18.20.1:51820"},
		Subnets:    []netip.Prefix{netip.MustParsePrefix("198.18.30.0/24"), netip.MustParsePrefix("fd00:30::/64")},
		Routes:     []netip.Prefix{netip.MustParsePrefix("198.18.96.0/20"), netip.MustParsePrefix("fd00:96::/48")},
	}
}

func TestConnectorRoundTrip(t *testing.T) {
	c := testConnector(t)
	data, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseConnector(data)
	if err != nil {
		t.Fatalf("parse own output: %v\n%s", err, data)
	}
	if got.PrivateKey != c.PrivateKey || got.Edge.PublicKey != c.Edge.PublicKey || got.Edge.Endpoint != c.Edge.Endpoint {
		t.Fatalf("keys or endpoint changed:\n%s", data)
	}
	if len(got.Subnets) != 2 || got.Subnets[1] != c.Subnets[1] || len(got.Routes) != 2 || got.Addresses[1] != c.Addresses[1] {
		t.Fatalf("prefixes changed: %+v", got)
	}
	if got.MTU != DefaultMTU || got.Interface != DefaultInterface || !*got.Forwarding || got.Edge.Keepalive != Duration(DefaultKeepalive) {
		t.Fatalf("defaults not filled: %+v", got)
	}
}

func TestConnectorErrors(t *testing.T) {
	base := testConnector(t)
	good, err := base.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, from, to, want string }{
		{"unknown field", "name: site-a", "name: site-a\nbogus: 1", "field bogus not found"},
		{"bad key", "privateKey: ", "privateKey: AAAA\nx: ", "not a WireGuard key"},
		{"overlapping subnets", "- fd00:30::/64", "- 198.18.30.128/25", "subnets[1]: 198.18.30.128/25 overlaps subnets[0]"},
		{"host bits", "- 198.18.30.0/24", "- 198.18.30.1/24", "host bits set"},
		{"route over subnet", "- 198.18.96.0/20", "- 198.18.0.0/16", "routes[0]: 198.18.0.0/16 overlaps subnets[0]"},
		{"endpoint", "198.18.20.1:51820", "198.18.20.1", "edge.endpoint"},
		{"address not host", "- 198.18.96.2/32", "- 198.18.96.0/24", "addresses[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := strings.Replace(string(good), tc.from, tc.to, 1)
			if data == string(good) {
				t.Fatalf("test edit %q not applied", tc.from)
			}
			_, err := ParseConnector([]byte(data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestKey(t *testing.T) {
	priv, err := GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseKey(priv.String())
	if err != nil || k != priv {
		t.Fatalf("round trip: %v", err)
	}
	// RFC 7748 section 6.1 test vector.
	a, _ := ParseKey("dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=")
	if got := a.PublicKey().String(); got != "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=" {
		t.Fatalf("public key %s", got)
	}
	if _, err := ParseKey("short"); err == nil {
		t.Fatal("short key accepted")
	}
}
