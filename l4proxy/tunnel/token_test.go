package tunnel

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
)

func TestTokenRoundTrip(t *testing.T) {
	_, pin := edgeCert(t)
	tok, err := NewToken([]string{"edge1.example:443", "[2001:db8::1]:7844", "198.18.0.1:7844"}, pin)
	if err != nil {
		t.Fatal(err)
	}
	s := EncodeToken(tok)
	if !strings.HasPrefix(s, TokenPrefix) {
		t.Fatal(s)
	}
	got, err := ParseToken(" " + s + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if got.TunnelID != tok.TunnelID || got.Secret != tok.Secret || got.EdgePin != tok.EdgePin || strings.Join(got.Edges, ",") != strings.Join(tok.Edges, ",") {
		t.Fatalf("round trip: %+v != %+v", got, tok)
	}
}

func TestParseTokenErrors(t *testing.T) {
	_, pin := edgeCert(t)
	tok, _ := NewToken([]string{"e.example:1"}, pin)
	raw, _ := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(EncodeToken(tok), TokenPrefix))
	enc := func(b []byte) string { return TokenPrefix + base64.RawURLEncoding.EncodeToString(b) }
	mut := func(f func(b []byte) []byte) string {
		b := append([]byte(nil), raw...)
		return enc(f(b))
	}
	noEdges := tok
	noEdges.Edges = nil
	badPort := tok
	badPort.Edges = []string{"host:0"}
	noPort := tok
	noPort.Edges = []string{"host"}
	cases := map[string]string{
		"missing \"onr1_\" prefix":  "abc",
		"unsupported token version": "onr2_AAAA",
		"bad base64url":             TokenPrefix + "!!!",
		"encoding version":          mut(func(b []byte) []byte { b[0] = 9; return b }),
		"bad pin length":            mut(func(b []byte) []byte { b[49] = 20; return b }),
		"truncated pin":             mut(func(b []byte) []byte { return b[:60] }),
		"truncated before the pin":  mut(func(b []byte) []byte { return b[:20] }),
		"missing edge address":      EncodeToken(noEdges),
		"bad port":                  EncodeToken(badPort),
		"missing port":              EncodeToken(noPort),
		"trailing bytes":            mut(func(b []byte) []byte { return append(b, 1) }),
		"truncated edge address":    mut(func(b []byte) []byte { return b[:len(b)-1] }),
	}
	for want, s := range cases {
		_, err := ParseToken(s)
		if !errors.Is(err, ErrBadToken) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want it to mention %q", s, err, want)
		}
	}
}

func TestGenerateEdgeCertificate(t *testing.T) {
	cert, certPEM, keyPEM, err := GenerateEdgeCertificate("edge.example", "198.18.0.1")
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(certPEM)
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatal("cert PEM")
	}
	if k, _ := pem.Decode(keyPEM); k == nil || k.Type != "PRIVATE KEY" {
		t.Fatal("key PEM")
	}
	x, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pin, err := CertificatePin(&cert)
	if err != nil || pin != SPKIPin(x) {
		t.Fatal("pins differ", err)
	}
	if len(x.DNSNames) != 1 || len(x.IPAddresses) != 1 {
		t.Fatal(x.DNSNames, x.IPAddresses)
	}
}
