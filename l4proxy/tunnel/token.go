package tunnel

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"strconv"
	"strings"
	"time"
)

// TokenPrefix starts every encoded token; the digit is the token format version.
const TokenPrefix = "onr1_"

// Token is everything a connector needs to join a tunnel.
type Token struct {
	TunnelID [16]byte
	// Secret is never sent on the wire; the connector proves it with an HMAC.
	Secret [32]byte
	// Edges are the edge addresses ("host:port"), tried in order. At least one.
	Edges []string
	// EdgePin is the SHA-256 of the edge certificate's SubjectPublicKeyInfo ([SPKIPin]).
	EdgePin [32]byte
}

// NewToken returns a token with a fresh random tunnel ID and secret.
func NewToken(edges []string, pin [32]byte) (Token, error) {
	t := Token{Edges: append([]string(nil), edges...), EdgePin: pin}
	if _, err := rand.Read(t.TunnelID[:]); err != nil {
		return Token{}, fmt.Errorf("new token: %w", err)
	}
	if _, err := rand.Read(t.Secret[:]); err != nil {
		return Token{}, fmt.Errorf("new token: %w", err)
	}
	if err := t.validate(); err != nil {
		return Token{}, fmt.Errorf("new token: %w", err)
	}
	return t, nil
}

// TunnelIDString returns the tunnel ID in hex, for logs and the CLI.
func (t *Token) TunnelIDString() string { return hex.EncodeToString(t.TunnelID[:]) }

const tokenVersion = 1

// EncodeToken returns [TokenPrefix] followed by the unpadded base64url of a
// compact binary encoding:
//
//	version u8 | tunnelID [16] | secret [32] | pinLen u8 (32) | pin | nEdges u8 | (len u8 | "host:port")...
//
// Edges beyond 255, or longer than 255 bytes, are dropped; ParseToken of the
// result fails if none remain.
func EncodeToken(t Token) string {
	b := make([]byte, 0, 1+16+32+1+32+1+32*len(t.Edges))
	b = append(b, tokenVersion)
	b = append(b, t.TunnelID[:]...)
	b = append(b, t.Secret[:]...)
	b = append(b, 32)
	b = append(b, t.EdgePin[:]...)
	var edges []string
	for _, e := range t.Edges {
		if len(e) <= 255 && len(edges) < 255 {
			edges = append(edges, e)
		}
	}
	b = append(b, byte(len(edges)))
	for _, e := range edges {
		b = append(b, byte(len(e)))
		b = append(b, e...)
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// ParseToken decodes a token made by [EncodeToken]. Surrounding white space is
// ignored. Every error wraps [ErrBadToken] and names what is wrong.
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)
	var t Token
	if !strings.HasPrefix(s, TokenPrefix) {
		if i := strings.IndexByte(s, '_'); i > 0 && i < 8 && strings.HasPrefix(s, "onr") {
			return t, fmt.Errorf("parse token: unsupported token version %q (want %q): %w", s[:i+1], TokenPrefix, ErrBadToken)
		}
		return t, fmt.Errorf("parse token: missing %q prefix: %w", TokenPrefix, ErrBadToken)
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s[len(TokenPrefix):], "="))
	if err != nil {
		return t, fmt.Errorf("parse token: bad base64url encoding: %v: %w", err, ErrBadToken)
	}
	if len(b) < 1 {
		return t, fmt.Errorf("parse token: empty: %w", ErrBadToken)
	}
	if b[0] != tokenVersion {
		return t, fmt.Errorf("parse token: unsupported encoding version %d: %w", b[0], ErrBadToken)
	}
	b = b[1:]
	if len(b) < 16+32+1 {
		return t, fmt.Errorf("parse token: truncated before the pin: %w", ErrBadToken)
	}
	copy(t.TunnelID[:], b)
	copy(t.Secret[:], b[16:])
	b = b[48:]
	if b[0] != 32 {
		return t, fmt.Errorf("parse token: bad pin length %d (want 32, a SHA-256): %w", b[0], ErrBadToken)
	}
	b = b[1:]
	if len(b) < 32+1 {
		return t, fmt.Errorf("parse token: truncated pin: %w", ErrBadToken)
	}
	copy(t.EdgePin[:], b)
	n := int(b[32])
	b = b[33:]
	for i := range n {
		if len(b) < 1 || len(b) < 1+int(b[0]) {
			return t, fmt.Errorf("parse token: truncated edge address %d: %w", i, ErrBadToken)
		}
		t.Edges = append(t.Edges, string(b[1:1+int(b[0])]))
		b = b[1+int(b[0]):]
	}
	if len(b) != 0 {
		return t, fmt.Errorf("parse token: %d trailing bytes: %w", len(b), ErrBadToken)
	}
	if err := t.validate(); err != nil {
		return Token{}, fmt.Errorf("parse token: %w", err)
	}
	return t, nil
}

func (t *Token) validate() error {
	if len(t.Edges) == 0 {
		return fmt.Errorf("missing edge address: %w", ErrBadToken)
	}
	for _, e := range t.Edges {
		host, port, err := net.SplitHostPort(e)
		if err != nil {
			return fmt.Errorf("edge address %q: %v: %w", e, err, ErrBadToken)
		}
		if host == "" {
			return fmt.Errorf("edge address %q: empty host: %w", e, ErrBadToken)
		}
		if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
			return fmt.Errorf("edge address %q: bad port: %w", e, ErrBadToken)
		}
	}
	if t.EdgePin == ([32]byte{}) {
		return fmt.Errorf("missing edge certificate pin: %w", ErrBadToken)
	}
	if t.Secret == ([32]byte{}) {
		return fmt.Errorf("missing secret: %w", ErrBadToken)
	}
	return nil
}

// SPKIPin returns the SHA-256 of cert's SubjectPublicKeyInfo, the value pinned in [Token.EdgePin].
func SPKIPin(cert *x509.Certificate) [32]byte {
	return sha256.Sum256(cert.RawSubjectPublicKeyInfo)
}

// CertificatePin returns the [SPKIPin] of the leaf of c.
func CertificatePin(c *tls.Certificate) ([32]byte, error) {
	leaf := c.Leaf
	if leaf == nil {
		if len(c.Certificate) == 0 {
			return [32]byte{}, fmt.Errorf("certificate pin: empty certificate chain")
		}
		var err error
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return [32]byte{}, fmt.Errorf("certificate pin: %w", err)
		}
	}
	return SPKIPin(leaf), nil
}

// GenerateEdgeCertificate returns a new self-signed ECDSA P-256 certificate for
// the edge, valid for ten years, naming hosts (DNS names or IP literals) as SANs.
// It returns the certificate ready for crypto/tls and its certificate and
// PKCS#8 private key in PEM.
func GenerateEdgeCertificate(hosts ...string) (cert tls.Certificate, certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return cert, nil, nil, fmt.Errorf("generate edge certificate: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return cert, nil, nil, fmt.Errorf("generate edge certificate: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "onramp edge"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return cert, nil, nil, fmt.Errorf("generate edge certificate: %w", err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return cert, nil, nil, fmt.Errorf("generate edge certificate: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk})
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return cert, nil, nil, fmt.Errorf("generate edge certificate: %w", err)
	}
	return cert, certPEM, keyPEM, nil
}

// pinMatches reports whether the SHA-256 of the SubjectPublicKeyInfo spki is pin.
func pinMatches(spki []byte, pin [32]byte) bool {
	got := sha256.Sum256(spki)
	return subtle.ConstantTimeCompare(got[:], pin[:]) == 1
}
