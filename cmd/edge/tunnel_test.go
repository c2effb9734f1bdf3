package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

// newTunnelCLI builds the edge and writes a configuration with only the
// tunnel listener, on a free port of 127.0.0.1 (advertised in tokens).
func newTunnelCLI(t *testing.T) *edgeCLI {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "edge")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	e := &edgeCLI{bin: bin, config: filepath.Join(dir, "edge.yml"), data: filepath.Join(dir, "data")}
	cfg := fmt.Sprintf("data: %s\nlisten: {tunnels: \"127.0.0.1:%d\"}\n", e.data, freeTunnelPort(t))
	if err := os.WriteFile(e.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

func parseToken(t *testing.T, out string) tunnel.Token {
	t.Helper()
	tok, err := tunnel.ParseToken(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("token %q: %v", out, err)
	}
	return tok
}

// dialEdge connects with tok over proto and returns the connection, or the
// error.
func dialEdge(t *testing.T, proto string, tok tunnel.Token) (tunnel.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := tunnel.Dial(ctx, proto, tok.Edges[0], tok, [16]byte{0xcc}, nil)
	if err == nil {
		t.Cleanup(func() { c.CloseWithError(tunnel.CloseNormal, "") })
	}
	return c, err
}

func wantRefused(t *testing.T, what string, err error) {
	t.Helper()
	var ae *tunnel.AuthError
	if !errors.As(err, &ae) || ae.Reason != tunnel.AuthDenied {
		t.Errorf("%s: %v, want the refusal of an unknown tunnel or bad secret", what, err)
	}
}

// wantClosed waits for c to be closed by the edge for reason.
func wantClosed(t *testing.T, what string, c tunnel.Conn, reason tunnel.AuthReason) {
	t.Helper()
	select {
	case <-c.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: still connected", what)
	}
	var ae *tunnel.AuthError
	if cause := context.Cause(c.Context()); !errors.As(cause, &ae) || ae.Reason != reason {
		t.Errorf("%s: closed with %v, want %v", what, cause, reason)
	}
}

// TestTunnelRotateCLI: `edge tunnel rotate` offline and on a running edge.
// The tunnel keeps its ID; the new token works, the old one is refused at
// once; on a running edge the connections of the old token are dropped
// with "token rotated" (QUIC and HTTP/2), those of the new one stay.
func TestTunnelRotateCLI(t *testing.T) {
	e := newTunnelCLI(t)
	out, _ := e.mustRun(t, "tunnel", "create", "demo")
	tok1 := parseToken(t, out)
	out, stderr := e.mustRun(t, "tunnel", "rotate", "demo")
	tok2 := parseToken(t, out)
	if tok2.TunnelID != tok1.TunnelID || tok2.Secret == tok1.Secret || tok2.EdgePin != tok1.EdgePin {
		t.Errorf("offline rotate: tunnel %x -> %x, secret changed %v; want the same tunnel with a new secret",
			tok1.TunnelID, tok2.TunnelID, tok2.Secret != tok1.Secret)
	}
	if !strings.Contains(stderr, "tunnel demo rotated") || !strings.Contains(stderr, "the old token no longer works") {
		t.Errorf("rotate said %q", stderr)
	}
	if _, s, err := e.run(t, "tunnel", "rotate", "nope"); err == nil || !strings.Contains(s, `"nope": not found`) {
		t.Errorf("rotating an unknown tunnel: %v, %q", err, s)
	}
	list, _ := e.mustRun(t, "tunnel", "list")
	if strings.Count(list, "demo") != 1 || !strings.HasPrefix(list, "NAME") {
		t.Errorf("tunnel list after rotate:\n%s", list)
	}

	startEdge(t, e)
	_, err := dialEdge(t, tunnel.ProtoQUIC, tok1)
	wantRefused(t, "the token rotated offline", err)
	var live []tunnel.Conn
	for _, proto := range []string{tunnel.ProtoQUIC, tunnel.ProtoHTTP2} {
		c, err := dialEdge(t, proto, tok2)
		if err != nil {
			t.Fatalf("%s with the current token: %v", proto, err)
		}
		live = append(live, c)
	}

	out, _ = e.mustRun(t, "tunnel", "rotate", "demo")
	tok3 := parseToken(t, out)
	if tok3.TunnelID != tok1.TunnelID || tok3.Secret == tok2.Secret {
		t.Error("online rotate: not the same tunnel with a new secret")
	}
	for _, c := range live {
		wantClosed(t, c.Protocol()+" connection of the rotated token", c, tunnel.AuthRotated)
	}
	for _, proto := range []string{tunnel.ProtoQUIC, tunnel.ProtoHTTP2} {
		_, err := dialEdge(t, proto, tok2)
		wantRefused(t, proto+" with the rotated token", err)
	}
	c, err := dialEdge(t, tunnel.ProtoHTTP2, tok3)
	if err != nil {
		t.Fatalf("with the new token: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	if c.Context().Err() != nil {
		t.Fatalf("the new token's connection was closed: %v", context.Cause(c.Context()))
	}

	e.mustRun(t, "tunnel", "delete", "demo")
	wantClosed(t, "connection of the deleted tunnel", c, tunnel.AuthTunnelDeleted)
	_, err = dialEdge(t, tunnel.ProtoQUIC, tok3)
	wantRefused(t, "the deleted tunnel's token", err)
}
