package tunnel

import (
	"context"
	"errors"
	"fmt"
)

// Transport protocol names accepted by [Dial] and returned by [Conn.Protocol].
const (
	ProtoQUIC  = "quic"
	ProtoHTTP2 = "http2"
	ProtoAuto  = "auto"
)

// Dial connects a connector to the edge at addr with proto ([ProtoQUIC], [ProtoHTTP2]
// or [ProtoAuto]). With "auto" it tries QUIC for at most [Config.QUICHandshakeTimeout]
// and falls back to HTTP/2; the returned Conn's Protocol says which was used, and a
// caller holding an HTTP/2 connection may call Dial again later to retry QUIC.
//
// An [*AuthError] or a pin mismatch ([ErrPinMismatch]) from QUIC is returned at once,
// without fallback: the edge answered, and trying another transport would not change
// the answer. If both transports fail, the error joins both failures.
func Dial(ctx context.Context, proto, addr string, tok Token, connectorID [16]byte, cfg *Config) (Conn, error) {
	switch proto {
	case ProtoQUIC:
		return DialQUIC(ctx, addr, tok, connectorID, cfg)
	case ProtoHTTP2:
		return DialHTTP2(ctx, addr, tok, connectorID, cfg)
	case ProtoAuto, "":
	default:
		return nil, fmt.Errorf("dial: unknown protocol %q (want quic, http2 or auto)", proto)
	}
	c := cfg.withDefaults()
	qctx, cancel := context.WithTimeout(ctx, c.QUICHandshakeTimeout)
	conn, qerr := DialQUIC(qctx, addr, tok, connectorID, cfg)
	cancel()
	if qerr == nil {
		return conn, nil
	}
	var ae *AuthError
	if errors.As(qerr, &ae) || errors.Is(qerr, ErrPinMismatch) || ctx.Err() != nil {
		return nil, qerr
	}
	conn, herr := DialHTTP2(ctx, addr, tok, connectorID, cfg)
	if herr != nil {
		if errors.As(herr, &ae) {
			return nil, herr
		}
		return nil, errors.Join(qerr, herr)
	}
	return conn, nil
}
