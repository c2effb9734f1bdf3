package l3config

import (
	"net/netip"
	"os"
	"path/filepath"
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

// TestSecretsConnectorKeyFile: the l3.yml the edge prints names the key
// file and holds no key; LoadConnector reads the key from it (a relative
// path from the l3.yml's directory); a missing or bad key file, or a key
// both inline and in a file, is refused naming the field.
func TestSecretsConnectorKeyFile(t *testing.T) {
	c := testConnector(t)
	priv := c.PrivateKey
	c.PrivateKey, c.PrivateKeyFile = Key{}, "site-a.key"
	data, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	if strings.Contains(text, priv.String()) || strings.Contains(text, "privateKey:") || !strings.Contains(text, "privateKeyFile: site-a.key") {
		t.Fatalf("printed l3.yml:\n%s", text)
	}
	dir := t.TempDir()
	config := filepath.Join(dir, "l3.yml")
	if err := os.WriteFile(config, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConnector(config); err == nil || !strings.Contains(err.Error(), "privateKeyFile") || !strings.Contains(err.Error(), "site-a.key") {
		t.Fatalf("missing key file: %v", err)
	}
	keyPath := filepath.Join(dir, "site-a.key")
	if err := os.WriteFile(keyPath, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConnector(config); err == nil || !strings.Contains(err.Error(), "not a WireGuard key") {
		t.Fatalf("bad key file: %v", err)
	}
	if err := os.WriteFile(keyPath, priv.KeyFileData(), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := LoadConnector(config)
	if err != nil {
		t.Fatal(err)
	}
	if got.PrivateKey != priv || got.KeyPath(config) != keyPath {
		t.Fatalf("key from file: %v at %s", got.PrivateKey == priv, got.KeyPath(config))
	}
	// Marshal of a loaded config still names the file only.
	again, _ := got.Marshal()
	if strings.Contains(string(again), priv.String()) {
		t.Fatalf("re-marshalled config holds the key:\n%s", again)
	}
	// An absolute path is taken as is.
	got.PrivateKeyFile = keyPath
	if got.KeyPath("/elsewhere/l3.yml") != keyPath {
		t.Fatal("absolute key path changed")
	}

	// The old form, the key inline, still loads.
	c.PrivateKey, c.PrivateKeyFile = priv, ""
	inline, _ := c.Marshal()
	if got, err := ParseConnector(inline); err != nil || got.PrivateKey != priv {
		t.Fatalf("inline key: %v", err)
	}
	both := strings.Replace(string(inline), "name: site-a", "name: site-a\nprivateKeyFile: site-a.key", 1)
	if _, err := ParseConnector([]byte(both)); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Fatalf("key inline and in a file: %v", err)
	}
	neither := strings.Replace(string(inline), "privateKey: "+priv.String(), "", 1)
	if _, err := ParseConnector([]byte(neither)); err == nil || !strings.Contains(err.Error(), "privateKeyFile: missing") {
		t.Fatalf("no key: %v", err)
	}
}

// TestSecretsConnectorSecondDocument: a second YAML document in l3.yml is
// refused, not ignored.
func TestSecretsConnectorSecondDocument(t *testing.T) {
	good, err := testConnector(t).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, extra := range []string{"---\nname: other\n", "---\n", "--- 1\n", "---\n: [\n"} {
		_, err := ParseConnector(append(append([]byte{}, good...), extra...))
		if err == nil || !strings.Contains(err.Error(), "parse:") {
			t.Errorf("l3.yml followed by %q: %v", extra, err)
		}
	}
}

func TestReadKeyFile(t *testing.T) {
	dir := t.TempDir()
	k, _ := GeneratePrivateKey()
	for _, tc := range []struct {
		name, data, want string
	}{
		{"wg genkey form", k.String() + "\n", ""},
		{"white space", "  " + k.String() + " \r\n\n", ""},
		{"empty", "", "not a WireGuard key"},
		{"too long", strings.Repeat("A", MaxKeyFileSize+1), "not a WireGuard key"},
		{"zero", Key{}.String(), "all zeros"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, "k")
			if err := os.WriteFile(p, []byte(tc.data), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := ReadKeyFile(p)
			if tc.want == "" {
				if err != nil || got != k {
					t.Fatalf("%v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("error %v, want %q naming the file", err, tc.want)
			}
		})
	}
}

// TestConnectorEdgeEndpoints: several edges sharing a key are listed under
// edge.endpoints (after edge.endpoint, if set), each once, and survive a
// round trip.
func TestConnectorEdgeEndpoints(t *testing.T) {
	c := testConnector(t)
	c.Edge.Endpoint = ""
	c.Edge.Endpoints = []string{"198.18.20.1:51820", "edge2.example.net:51820"}
	c.Edge.Keepalive = Duration(DefaultKeepalive)
	data, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "endpoint:") || !strings.Contains(string(data), "endpoints:\n    - 198.18.20.1:51820\n    - edge2.example.net:51820\n") {
		t.Fatalf("marshalled:\n%s", data)
	}
	got, err := ParseConnector(data)
	if err != nil {
		t.Fatalf("parse own output: %v\n%s", err, data)
	}
	if !got.Edge.Equal(c.Edge) || len(got.Edge.All()) != 2 {
		t.Fatalf("edge %+v, want %+v", got.Edge, c.Edge)
	}
	both := got.Edge
	both.Endpoint = "198.18.20.9:51820"
	if all := both.All(); len(all) != 3 || all[0] != "198.18.20.9:51820" || both.Equal(got.Edge) {
		t.Fatalf("endpoint and endpoints: %v", all)
	}
	for _, tc := range []struct {
		name     string
		endpoint string
		eps      []string
		want     string
	}{
		{"none", "", nil, "edge.endpoint: missing"},
		{"no port", "", []string{"198.18.20.1:51820", "edge2"}, "edge.endpoints[1]"},
		{"twice", "198.18.20.1:51820", []string{"198.18.20.1:51820"}, `edge.endpoints[0]: "198.18.20.1:51820" is named twice`},
		{"too many", "", strings.Split(strings.Repeat("e:1,", MaxEdgeEndpoints+1), ",")[:MaxEdgeEndpoints+1], "at most"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := *got
			bad.Edge.Endpoint, bad.Edge.Endpoints = tc.endpoint, tc.eps
			if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
