package l3config

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func testClient(t *testing.T) *Client {
	t.Helper()
	priv, err := GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	edge, _ := GeneratePrivateKey()
	return &Client{
		Name:          "alice",
		PrivateKey:    priv,
		Addresses:     []netip.Prefix{netip.MustParsePrefix("198.18.96.2/32"), netip.MustParsePrefix("fd00:96::2/128")},
		DNS:           []string{"198.18.30.53", "corp.example.test"},
		MTU:           1420,
		EdgePublicKey: edge.PublicKey(),
		Endpoint:      "[fd00::1]:51820",
		AllowedIPs:    []netip.Prefix{netip.MustParsePrefix("198.18.96.0/20"), netip.MustParsePrefix("fd00:96::/48"), netip.MustParsePrefix("198.18.30.0/24")},
		Keepalive:     DefaultClientKeepalive,
	}
}

func TestClientRoundTrip(t *testing.T) {
	c := testClient(t)
	data, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, line := range []string{
		"[Interface]\n", "PrivateKey = " + c.PrivateKey.String() + "\n",
		"Address = 198.18.96.2/32, fd00:96::2/128\n", "DNS = 198.18.30.53, corp.example.test\n", "MTU = 1420\n",
		"\n[Peer]\n", "PublicKey = " + c.EdgePublicKey.String() + "\n", "Endpoint = [fd00::1]:51820\n",
		"AllowedIPs = 198.18.96.0/20, fd00:96::/48, 198.18.30.0/24\n", "PersistentKeepalive = 25\n",
	} {
		if !strings.Contains(text, line) {
			t.Errorf("missing %q in\n%s", line, text)
		}
	}
	got, err := ParseClient(data)
	if err != nil {
		t.Fatalf("parse own output: %v\n%s", err, text)
	}
	if got.PrivateKey != c.PrivateKey || got.PublicKey != c.PrivateKey.PublicKey() || got.EdgePublicKey != c.EdgePublicKey ||
		got.Endpoint != c.Endpoint || got.MTU != c.MTU || got.Keepalive != c.Keepalive ||
		!slices.Equal(got.Addresses, c.Addresses) || !slices.Equal(got.AllowedIPs, c.AllowedIPs) || !slices.Equal(got.DNS, c.DNS) {
		t.Fatalf("round trip:\n%+v\nwant\n%+v", got, c)
	}
}

func TestClientPlaceholder(t *testing.T) {
	c := testClient(t)
	c.PublicKey = c.PrivateKey.PublicKey()
	priv := c.PrivateKey
	c.PrivateKey = Key{}
	c.DNS, c.MTU = nil, 0
	data, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	if strings.Contains(text, priv.String()) || strings.Contains(text, "\nPrivateKey") {
		t.Fatalf("a private key line in\n%s", text)
	}
	if !strings.Contains(text, "# PrivateKey = <the private key of "+c.PublicKey.String()) || strings.Contains(text, "DNS") || strings.Contains(text, "MTU") {
		t.Fatalf("placeholder or optional lines wrong:\n%s", text)
	}
	got, err := ParseClient(data)
	if err != nil {
		t.Fatal(err)
	}
	if !got.PrivateKey.IsZero() || got.PublicKey != c.PublicKey {
		t.Fatalf("parsed placeholder: private %v public %v", got.PrivateKey, got.PublicKey)
	}
	// The user puts their key in: the file is complete.
	filled := strings.Replace(text, "# PrivateKey = <the private key of "+c.PublicKey.String()+
		": the edge never had it; replace this line with PrivateKey = YOUR_KEY>", "PrivateKey = "+priv.String(), 1)
	if got, err := ParseClient([]byte(filled)); err != nil || got.PrivateKey != priv {
		t.Fatalf("filled in: %v\n%s", err, filled)
	}
}

func TestClientErrors(t *testing.T) {
	c := testClient(t)
	bad := *c
	bad.Endpoint = ""
	if _, err := bad.Marshal(); err == nil || !strings.Contains(err.Error(), "endpoint missing") {
		t.Fatalf("no endpoint: %v", err)
	}
	bad = *c
	bad.DNS = []string{"a, b"}
	if _, err := bad.Marshal(); err == nil || !strings.Contains(err.Error(), `DNS entry "a, b"`) {
		t.Fatalf("bad dns: %v", err)
	}
	good, _ := c.Marshal()
	for _, tc := range []struct{ from, to, want string }{
		{"MTU = 1420", "Table = off", "line 7: table: unknown key in [interface]"},
		{"[Peer]", "[Peer]\n[Peer]", "a second [Peer] section"},
		{"Endpoint = [fd00::1]:51820", "Endpoint = fd00::1", "endpoint: address fd00::1: too many colons"},
		{"AllowedIPs = 198.18.96.0/20", "AllowedIPs = 198.18.96.0", "allowedips"},
		{"PublicKey = ", "PublicKey = x", "not a WireGuard key"},
	} {
		data := strings.Replace(string(good), tc.from, tc.to, 1)
		if _, err := ParseClient([]byte(data)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s -> %s: error %v, want %q", tc.from, tc.to, err, tc.want)
		}
	}
}

// The QR code's text is the config without its comments, and still the
// same config: a WireGuard app reading the code gets the private key.
func TestQRText(t *testing.T) {
	c := testClient(t)
	data, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	text := QRText(data)
	if strings.Contains(text, "#") || len(text) >= len(data) {
		t.Fatalf("QR text keeps comments or drops nothing:\n%s", text)
	}
	got, err := ParseClient([]byte(text))
	if err != nil || got.PrivateKey != c.PrivateKey || got.Endpoint != c.Endpoint || !slices.Equal(got.AllowedIPs, c.AllowedIPs) {
		t.Fatalf("QR text parses to %+v, %v:\n%s", got, err, text)
	}
}
