package testnet

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

// SlowConnector is the attacker of hole 3 ("a deleted tunnel's connection
// can survive"): a connector of the HTTP/2 transport, written here from the
// wire protocol, that authenticates with a token and then holds back its
// answer to the edge's datagram stream — the last step before the edge
// registers the connection — until [SlowConnector.Release], for as long as
// the edge's handshake timeout lets it. A tunnel deleted, or a token
// rotated, in that gap must not leave the connection serving.
//
// After Release it answers PINGs, refuses the user streams the edge opens
// on it (counting them) and records the reason the edge closes it with.
type SlowConnector struct {
	tc      *tls.Conn
	fr      *http2.Framer
	wmu     sync.Mutex // fr's writes
	enc     *hpack.Encoder
	hbuf    bytes.Buffer
	tok     tunnel.Token
	held    chan struct{} // closed once authenticated and the datagram stream is held
	release chan struct{}
	relOnce sync.Once
	done    chan struct{}

	mu      sync.Mutex
	dgID    uint32 // the datagram stream, held
	verdict string // the edge's verdict on the proof
	reason  string // the edge's close reason (control stream), if any
	streams int    // user streams the edge opened
	err     error  // why the connection ended
}

// h2 control messages of the tunnel protocol (see l4proxy/tunnel/auth.go).
const (
	slowCtrlAuth   = 1
	slowCtrlResult = 2
	slowCtrlClose  = 4
)

// DialSlowConnector connects from node to the edge's tunnel port at addr
// with token (as printed by edge tunnel create) and starts the exchange.
// Wait on [SlowConnector.Held] for the edge's verdict.
func (node *Node) DialSlowConnector(addr, token string) (*SlowConnector, error) {
	tok, err := tunnel.ParseToken(token)
	if err != nil {
		return nil, err
	}
	raw, err := node.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(raw, &tls.Config{
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{tunnel.ALPNHTTP2},
		InsecureSkipVerify: true, //nolint:gosec // an attacker trusts any edge
	})
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return nil, fmt.Errorf("slow connector: tls: %w", err)
	}
	_ = tc.SetDeadline(time.Time{})
	c := &SlowConnector{tc: tc, tok: tok, held: make(chan struct{}), release: make(chan struct{}), done: make(chan struct{})}
	c.fr = http2.NewFramer(tc, tc)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.enc = hpack.NewEncoder(&c.hbuf)
	go c.run()
	return c, nil
}

// Held is closed once the edge accepted the proof and asked for the
// datagram stream, whose answer the connector holds back.
func (c *SlowConnector) Held() <-chan struct{} { return c.held }

// Release answers the datagram stream: the edge then registers the
// connection.
func (c *SlowConnector) Release() { c.relOnce.Do(func() { close(c.release) }) }

// Done is closed when the connection ended.
func (c *SlowConnector) Done() <-chan struct{} { return c.done }

// Verdict is the edge's answer to the proof ("ok" or the refusal).
func (c *SlowConnector) Verdict() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.verdict
}

// CloseReason is the reason the edge sent before closing the connection,
// "" if it sent none.
func (c *SlowConnector) CloseReason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}

// Streams is how many user streams the edge opened on the connection.
func (c *SlowConnector) Streams() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.streams
}

// Err is why the connection ended, once Done is closed.
func (c *SlowConnector) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the connection.
func (c *SlowConnector) Close() {
	c.Release()
	c.tc.Close()
	<-c.done
}

func (c *SlowConnector) write(f func() error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return f()
}

// respond sends HEADERS with :status 200 on stream id.
func (c *SlowConnector) respond(id uint32) error {
	return c.write(func() error {
		c.hbuf.Reset()
		_ = c.enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		return c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndHeaders: true})
	})
}

func (c *SlowConnector) run() {
	err := c.serve()
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
	c.tc.Close()
	close(c.done)
}

func (c *SlowConnector) serve() error {
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c.tc, preface); err != nil || string(preface) != http2.ClientPreface {
		return fmt.Errorf("slow connector: no client preface: %v", err)
	}
	if err := c.write(func() error { return c.fr.WriteSettings() }); err != nil {
		return err
	}
	var ctrl []byte // the edge's control stream (stream 1) so far
	authID := uint32(0)
	go func() {
		<-c.release
		<-c.held
		c.mu.Lock()
		id := c.dgID
		c.mu.Unlock()
		_ = c.respond(id)
	}()
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return err
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				err = c.write(func() error { return c.fr.WriteSettingsAck() })
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				err = c.write(func() error { return c.fr.WritePing(true, f.Data) })
			}
		case *http2.MetaHeadersFrame:
			switch f.PseudoValue("path") {
			case "/auth":
				authID = f.StreamID
				if err = c.respond(authID); err == nil {
					err = c.sendProof(authID)
				}
			case "/datagrams":
				c.mu.Lock()
				c.dgID = f.StreamID
				ok := c.verdict == "ok"
				c.mu.Unlock()
				if ok {
					close(c.held)
				}
			default: // a user's stream
				c.mu.Lock()
				c.streams++
				c.mu.Unlock()
				err = c.write(func() error { return c.fr.WriteRSTStream(f.StreamID, http2.ErrCodeRefusedStream) })
			}
		case *http2.DataFrame:
			if f.StreamID == authID {
				ctrl = append(ctrl, f.Data()...)
				ctrl = c.readCtrl(ctrl)
			}
			if n := uint32(len(f.Data())); n > 0 {
				err = c.write(func() error {
					if err := c.fr.WriteWindowUpdate(0, n); err != nil {
						return err
					}
					return c.fr.WriteWindowUpdate(f.StreamID, n)
				})
			}
		case *http2.GoAwayFrame:
			return fmt.Errorf("slow connector: GOAWAY from the edge (code %v)", f.ErrCode)
		}
		if err != nil {
			return err
		}
	}
}

// readCtrl consumes the complete control messages at the head of b: the
// verdict, then perhaps a close reason.
func (c *SlowConnector) readCtrl(b []byte) []byte {
	for len(b) >= 3 {
		n := int(binary.BigEndian.Uint16(b[1:3]))
		if len(b) < 3+n {
			break
		}
		typ, p := b[0], b[3:3+n]
		b = b[3+n:]
		if len(p) < 2 || int(p[1]) != len(p)-2 {
			continue
		}
		msg := tunnel.AuthReason(p[0]).String()
		if len(p) > 2 {
			msg = string(p[2:])
		}
		c.mu.Lock()
		switch typ {
		case slowCtrlResult:
			c.verdict = msg
		case slowCtrlClose:
			c.reason = msg
		}
		c.mu.Unlock()
	}
	return b
}

// sendProof writes the authentication message on the control stream:
// version | tunnel ID | connector ID | HMAC-SHA256(secret, TLS exporter).
func (c *SlowConnector) sendProof(id uint32) error {
	connectorID := [16]byte{0x5d, 0x0e}
	cs := c.tc.ConnectionState()
	ekm, err := cs.ExportKeyingMaterial(tunnel.ExporterLabel, append(c.tok.TunnelID[:], connectorID[:]...), 32)
	if err != nil {
		return err
	}
	m := hmac.New(sha256.New, c.tok.Secret[:])
	m.Write(ekm)
	p := []byte{slowCtrlAuth, 0, 1 + 16 + 16 + 32, tunnel.ProtocolVersion}
	p = append(p, c.tok.TunnelID[:]...)
	p = append(p, connectorID[:]...)
	p = m.Sum(p)
	return c.write(func() error { return c.fr.WriteData(id, false, p) })
}

// errNotHeld is returned by WaitHeld when the edge refused the proof.
var errNotHeld = errors.New("slow connector: the edge did not accept the proof")

// WaitHeld waits until the connection is held between authentication and
// registration, and fails if the edge refused it or timeout passed.
func (c *SlowConnector) WaitHeld(timeout time.Duration) error {
	select {
	case <-c.held:
		return nil
	case <-c.done:
		return fmt.Errorf("%w (verdict %q): %v", errNotHeld, c.Verdict(), c.Err())
	case <-time.After(timeout):
		return fmt.Errorf("slow connector: not held after %v (verdict %q)", timeout, c.Verdict())
	}
}
