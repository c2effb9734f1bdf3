package tunnel

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/quic-go/quic-go"
)

// ALPN protocol identifiers of the two transports.
const (
	ALPNQUIC  = "onramp-quic/1"
	ALPNHTTP2 = "h2"
)

// ExporterLabel is the TLS exporter label of the authentication proof (RFC 8446 section 7.5).
const ExporterLabel = "EXPORTER-onramp-auth"

// Authenticator is how the edge finds a tunnel's secret. It must be safe for
// concurrent use; it is called once per connection attempt, during authentication.
type Authenticator interface {
	// Secret returns the tunnel's secret, or ok=false if the tunnel is unknown
	// (the connector is then refused with [AuthDenied]; the edge's own
	// reason is [AuthUnknownTunnel]).
	Secret(tunnelID [16]byte) (secret []byte, ok bool)
}

// TunnelLookup is an optional extension of [Authenticator]: when the
// Authenticator also implements it, the edge calls LookupTunnel instead of
// Secret. A reason other than [AuthOK] refuses the connector (the edge's
// own reason, such as [AuthTunnelDeleted]; the peer is sent [AuthDenied]
// for the reasons that would tell whether the tunnel exists); secret is
// then ignored. generation is the secret's generation, which the
// connection keeps ([Conn.Generation]) so that the edge can drop it when
// the secret is replaced; an Authenticator without TunnelLookup gives 0.
type TunnelLookup interface {
	LookupTunnel(tunnelID [16]byte) (secret []byte, generation uint64, reason AuthReason)
}

// StaticAuthenticator is an [Authenticator] over a fixed map, for tests and small edges.
type StaticAuthenticator map[[16]byte][]byte

// Secret implements [Authenticator].
func (m StaticAuthenticator) Secret(id [16]byte) ([]byte, bool) {
	s, ok := m[id]
	return s, ok
}

func edgeTLSConfig(cert tls.Certificate, alpn string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{alpn},
	}
}

// connectorTLSConfig verifies the edge by its SPKI pin only: there is no CA and
// no name check. The ALPN must match, so a QUIC token cannot be replayed over
// the HTTP/2 transport's session or vice versa.
func connectorTLSConfig(addr string, pin [32]byte, alpn string) *tls.Config {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || net.ParseIP(host) != nil {
		host = ""
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		ServerName:         host, // SNI only; not verified
		InsecureSkipVerify: true, //nolint:gosec // verified by VerifyConnection against the pin
		NextProtos:         []string{alpn},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if cs.Version != tls.VersionTLS13 {
				return fmt.Errorf("verify edge: TLS version %x is not 1.3", cs.Version)
			}
			if cs.NegotiatedProtocol != alpn {
				return fmt.Errorf("verify edge: ALPN %q, want %q", cs.NegotiatedProtocol, alpn)
			}
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("verify edge: no certificate: %w", ErrPinMismatch)
			}
			if !pinMatches(cs.PeerCertificates[0].RawSubjectPublicKeyInfo, pin) {
				return fmt.Errorf("verify edge: %w", ErrPinMismatch)
			}
			return nil
		},
	}
}

// pinError reports whether err is (or stands for) a pin mismatch: crypto/tls
// keeps the VerifyConnection error in the chain on the TCP path, but QUIC only
// surfaces a TLS alert, so both are recognised and normalised to ErrPinMismatch.
func isPinError(err error) bool {
	if errors.Is(err, ErrPinMismatch) {
		return true
	}
	var ce *tls.CertificateVerificationError
	if errors.As(err, &ce) {
		return true
	}
	var ue x509.UnknownAuthorityError
	return errors.As(err, &ue)
}

// authProof computes HMAC-SHA256(secret, EKM) where the EKM binds the TLS session,
// the tunnel and the connector.
func authProof(cs *tls.ConnectionState, secret []byte, tunnelID, connectorID [16]byte) ([32]byte, error) {
	var ctx [32]byte
	copy(ctx[:], tunnelID[:])
	copy(ctx[16:], connectorID[:])
	ekm, err := cs.ExportKeyingMaterial(ExporterLabel, ctx[:], 32)
	if err != nil {
		return [32]byte{}, fmt.Errorf("auth proof: exporter: %w", err)
	}
	m := hmac.New(sha256.New, secret)
	m.Write(ekm)
	var out [32]byte
	m.Sum(out[:0])
	return out, nil
}

// Control messages: type u8 | len u16 | payload. They travel on the QUIC control
// stream and on the HTTP/2 "/auth" stream, which stays open as the control stream.
const (
	ctrlAuth       = 1 // connector -> edge: version u8 | tunnelID [16] | connectorID [16] | proof [32]
	ctrlAuthResult = 2 // edge -> connector: reason u8 | msgLen u8 | msg
	ctrlDrain      = 3 // connector -> edge: empty; no new streams on this connection
	ctrlClose      = 4 // edge -> connector (HTTP/2 only): reason u8 | msgLen u8 | msg; the edge closes the connection
	ctrlEdges      = 5 // edge -> connector: count u8 | (len u8 | host:port)*: the edges the connector may dial
	maxCtrlLen     = 1024
)

func writeCtrl(w io.Writer, typ byte, payload []byte) error {
	var b [3 + maxCtrlLen]byte
	if len(payload) > maxCtrlLen {
		return fmt.Errorf("write control: %w", ErrTooLong)
	}
	b[0] = typ
	binary.BigEndian.PutUint16(b[1:], uint16(len(payload)))
	n := copy(b[3:], payload)
	_, err := w.Write(b[:3+n])
	return err
}

// readCtrl reads one control message into buf (at least maxCtrlLen bytes).
func readCtrl(r io.Reader, buf []byte) (typ byte, payload []byte, err error) {
	var h [3]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	l := int(binary.BigEndian.Uint16(h[1:]))
	if l > maxCtrlLen {
		return 0, nil, fmt.Errorf("read control: %d bytes: %w", l, ErrTooLong)
	}
	if _, err := io.ReadFull(r, buf[:l]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return h[0], buf[:l], nil
}

type authHello struct {
	tunnelID, connectorID [16]byte
	proof                 [32]byte
	generation            uint64 // of the tunnel's secret, from TunnelLookup
}

// connectorSendAuth sends the connector's proof on the control channel.
func connectorSendAuth(w io.Writer, cs *tls.ConnectionState, tok *Token, connectorID [16]byte) error {
	proof, err := authProof(cs, tok.Secret[:], tok.TunnelID, connectorID)
	if err != nil {
		return err
	}
	var p [1 + 16 + 16 + 32]byte
	p[0] = ProtocolVersion
	copy(p[1:], tok.TunnelID[:])
	copy(p[17:], connectorID[:])
	copy(p[33:], proof[:])
	return writeCtrl(w, ctrlAuth, p[:])
}

// connectorReadAuthResult reads the edge's verdict: nil or *AuthError.
func connectorReadAuthResult(r io.Reader) error {
	var buf [maxCtrlLen]byte
	typ, p, err := readCtrl(r, buf[:])
	if err != nil {
		return fmt.Errorf("read auth result: %w", err)
	}
	if typ != ctrlAuthResult {
		return fmt.Errorf("read auth result: %w", ErrMalformed)
	}
	ae, err := parseVerdict(p)
	if err != nil {
		return fmt.Errorf("read auth result: %w", err)
	}
	if ae.Reason == AuthOK {
		return nil
	}
	return ae
}

// parseVerdict decodes the payload of ctrlAuthResult and ctrlClose.
func parseVerdict(p []byte) (*AuthError, error) {
	if len(p) < 2 || int(p[1]) != len(p)-2 {
		return nil, ErrMalformed
	}
	return &AuthError{Reason: AuthReason(p[0]), Message: string(p[2:])}, nil
}

// appendVerdict encodes the payload of ctrlAuthResult and ctrlClose; msg
// is cut to 255 bytes.
func appendVerdict(b []byte, reason AuthReason, msg string) []byte {
	msg = msg[:min(len(msg), 255)]
	b = append(b, byte(reason), byte(len(msg)))
	return append(b, msg...)
}

// authCloseError returns the [*AuthError] that a connection close by the
// peer carries in its application error code ([CloseAuthRefused] + reason,
// on QUIC), or err unchanged.
func authCloseError(err error) error {
	var ae *quic.ApplicationError
	if errors.As(err, &ae) && ae.Remote && uint64(ae.ErrorCode) > CloseAuthRefused && uint64(ae.ErrorCode) < CloseAuthRefused+0x100 {
		return &AuthError{Reason: AuthReason(uint64(ae.ErrorCode) - CloseAuthRefused), Message: ae.ErrorMessage}
	}
	return err
}

// isAuthClose reports whether code closes a connection for an [AuthReason].
func isAuthClose(code uint64) bool {
	return code > CloseAuthRefused && code < CloseAuthRefused+0x100
}

// unknownSecret stands in for the secret of an unknown tunnel, so that the
// proof is checked, and takes as long, whether the tunnel exists or not.
var unknownSecret [32]byte

// edgeCheckAuth reads the connector's hello and checks its proof. It returns
// the hello (with the secret's generation), and AuthOK or the edge's own
// reason to refuse, such as AuthUnknownTunnel or AuthBadSecret; the peer is
// to be sent reason.onWire(), as edgeWriteAuthResult does.
func edgeCheckAuth(r io.Reader, cs *tls.ConnectionState, auth Authenticator) (authHello, AuthReason, error) {
	var h authHello
	var buf [maxCtrlLen]byte
	typ, p, err := readCtrl(r, buf[:])
	if err != nil {
		return h, AuthMalformed, fmt.Errorf("read auth: %w", err)
	}
	if typ != ctrlAuth || len(p) != 1+16+16+32 {
		return h, AuthMalformed, fmt.Errorf("read auth: %w", ErrMalformed)
	}
	if p[0] != ProtocolVersion {
		return h, AuthMalformed, fmt.Errorf("read auth: %w", ErrUnsupportedVersion)
	}
	copy(h.tunnelID[:], p[1:])
	copy(h.connectorID[:], p[17:])
	copy(h.proof[:], p[33:])
	var secret []byte
	reason := AuthOK
	if l, ok := auth.(TunnelLookup); ok {
		secret, h.generation, reason = l.LookupTunnel(h.tunnelID)
	} else if s, ok := auth.Secret(h.tunnelID); ok {
		secret = s
	} else {
		reason = AuthUnknownTunnel
	}
	if reason != AuthOK {
		secret = unknownSecret[:]
	}
	want, err := authProof(cs, secret, h.tunnelID, h.connectorID)
	switch {
	case err != nil:
		return h, AuthInternal, err
	case reason != AuthOK:
		return h, reason, nil
	case !hmac.Equal(want[:], h.proof[:]):
		return h, AuthBadSecret, nil
	}
	return h, AuthOK, nil
}

// edgeWriteAuthResult sends the verdict for the edge's reason: the peer
// gets reason.onWire().
func edgeWriteAuthResult(w io.Writer, reason AuthReason) error {
	reason = reason.onWire()
	var b [2 + 255]byte
	return writeCtrl(w, ctrlAuthResult, appendVerdict(b[:0], reason, reason.String()))
}
