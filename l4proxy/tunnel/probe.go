package tunnel

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/quic-go/quic-go"
)

// Probe is what a handshake-only probe of an edge found ([ProbeQUIC],
// [ProbeHTTP2]).
type Probe struct {
	// RTT is the time the TCP connect took (HTTP/2), or the QUIC
	// handshake's smoothed RTT.
	RTT time.Duration
	// Handshake is how long the handshake took in all.
	Handshake time.Duration
	// EdgeTime is the edge's wall clock as it reported it (HTTP/2 only:
	// the payload of the PING the edge sends right after the TLS
	// handshake, Unix nanoseconds); Received is the local clock when it
	// arrived. Zero when the edge sent none.
	EdgeTime, Received time.Time
}

// ProbeQUIC runs a QUIC handshake with the edge at addr (ALPN [ALPNQUIC],
// the certificate checked against pin) and closes the connection without
// authenticating: it tells whether the edge's QUIC port answers over UDP,
// without joining a tunnel. The edge counts the attempt as one that sent
// no proof. A pin mismatch is an error wrapping [ErrPinMismatch].
func ProbeQUIC(ctx context.Context, addr string, pin [32]byte) (Probe, error) {
	start := time.Now()
	deadline, ok := ctx.Deadline()
	idle := 5 * time.Second
	if ok {
		idle = max(time.Until(deadline), time.Millisecond)
	}
	qc, err := quic.DialAddr(ctx, addr, connectorTLSConfig(addr, pin, ALPNQUIC), &quic.Config{HandshakeIdleTimeout: idle})
	if err != nil {
		if isPinError(err) && !errors.Is(err, ErrPinMismatch) {
			err = fmt.Errorf("%w: %w", ErrPinMismatch, err)
		}
		return Probe{}, fmt.Errorf("probe quic %s: %w", addr, err)
	}
	p := Probe{Handshake: time.Since(start), RTT: qc.ConnectionStats().SmoothedRTT}
	qc.CloseWithError(quic.ApplicationErrorCode(CloseNormal), "probe")
	return p, nil
}

// maxProbeFrames bounds the frames [ProbeHTTP2] reads looking for the
// edge's PING.
const maxProbeFrames = 8

// ProbeHTTP2 connects to the edge at addr over TCP, runs the TLS handshake
// of the HTTP/2 transport (ALPN "h2", the certificate checked against
// pin), reads the edge's first frames up to its PING, whose payload is
// the edge's clock, and closes the connection without authenticating.
func ProbeHTTP2(ctx context.Context, addr string, pin [32]byte) (Probe, error) {
	start := time.Now()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return Probe{}, fmt.Errorf("probe http2 %s: %w", addr, err)
	}
	defer closeNow(raw)
	p := Probe{RTT: time.Since(start)}
	if dl, ok := ctx.Deadline(); ok {
		_ = raw.SetDeadline(dl)
	}
	tc := tls.Client(raw, connectorTLSConfig(addr, pin, ALPNHTTP2))
	if err := tc.HandshakeContext(ctx); err != nil {
		if isPinError(err) && !errors.Is(err, ErrPinMismatch) {
			err = fmt.Errorf("%w: %w", ErrPinMismatch, err)
		}
		return Probe{}, fmt.Errorf("probe http2 %s: %w", addr, err)
	}
	p.Handshake = time.Since(start)
	// The edge is the HTTP/2 client: its preface, SETTINGS, maybe a
	// WINDOW_UPDATE, then a PING carrying its clock (h2mux.start).
	preface := make([]byte, len(h2Preface))
	if _, err := io.ReadFull(tc, preface); err != nil || string(preface) != h2Preface {
		return p, fmt.Errorf("probe http2 %s: no HTTP/2 preface from the edge: %v", addr, err)
	}
	buf := make([]byte, 16384) // the default SETTINGS_MAX_FRAME_SIZE: the probe sends no SETTINGS
	for range maxProbeFrames {
		var hdr [h2FrameHeaderLen]byte
		if _, err := io.ReadFull(tc, hdr[:]); err != nil {
			return p, fmt.Errorf("probe http2 %s: %w", addr, err)
		}
		length := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		if length > len(buf) {
			return p, fmt.Errorf("probe http2 %s: frame of %d bytes", addr, length)
		}
		if _, err := io.ReadFull(tc, buf[:length]); err != nil {
			return p, fmt.Errorf("probe http2 %s: %w", addr, err)
		}
		if hdr[3] == h2FramePing && hdr[4]&h2FlagAck == 0 && length == 8 {
			p.Received = time.Now()
			p.EdgeTime = time.Unix(0, int64(binary.BigEndian.Uint64(buf[:8])))
			return p, nil
		}
	}
	return p, nil // an edge that sends no clock: reachable all the same
}
