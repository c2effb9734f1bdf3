package connector_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onramp-net/onramp/dataplane/relay"
	"github.com/onramp-net/onramp/l4proxy/connector"
	"github.com/onramp-net/onramp/l4proxy/edge/edgetest"
)

// sumOrigin reads to EOF and answers with the count and SHA-256.
func sumOrigin(c net.Conn) {
	h := sha256.New()
	n, _ := io.Copy(h, c)
	fmt.Fprintf(c, "%d %x", n, h.Sum(nil))
}

// TestForward runs a local forward to a tcp:// and a unix: origin with
// each strategy that needs no eBPF: 64 MiB through each with the
// origin's checksum, and the forward's connections back to none.
func TestForward(t *testing.T) {
	tcpOrigin := edgetest.ServeTCPOrigin(t, "127.0.0.1", sumOrigin)
	sock := filepath.Join(t.TempDir(), "origin.sock")
	uln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer uln.Close()
	go func() {
		for {
			c, err := uln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); sumOrigin(c) }()
		}
	}()
	rules := edgetest.Ingress(t, fmt.Sprintf("ingress:\n  - {hostname: db.internal, service: \"tcp://%s\"}\n  - {hostname: sock.internal, service: \"unix:%s\"}\n  - service: http_status:404\n", tcpOrigin, sock))
	for _, s := range []relay.Strategy{relay.Splice, relay.Copy} {
		for _, service := range []string{"db.internal", "sock.internal"} {
			t.Run(s.String()+"/"+service, func(t *testing.T) {
				e, err := relay.New(relay.Config{Strategy: s})
				if err != nil {
					t.Fatal(err)
				}
				defer e.Close()
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				f := &connector.Forward{Service: service, Rules: rules, Engine: e, Logger: edgetest.Logger()}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- f.Serve(ctx, ln) }()
				defer func() {
					cancel()
					if err := <-done; err != nil {
						t.Errorf("Serve: %v", err)
					}
				}()
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				data := bytes.Repeat([]byte("forward!"), 8<<20) // 64 MiB
				go func() {
					c.Write(data)
					c.(*net.TCPConn).CloseWrite()
				}()
				got, err := io.ReadAll(c)
				if err != nil {
					t.Fatal(err)
				}
				want := fmt.Sprintf("%d %x", len(data), sha256.Sum256(data))
				if string(got) != want {
					t.Errorf("the origin answered %q, want %q", got, want)
				}
				c.Close()
				for deadline := time.Now().Add(5 * time.Second); f.Open() != 0 && time.Now().Before(deadline); {
					time.Sleep(10 * time.Millisecond)
				}
				if n := f.Open(); n != 0 {
					t.Errorf("%d connections open after the user left", n)
				}
			})
		}
	}
}

// TestForwardRule refuses services a forward cannot relay in the kernel.
func TestForwardRule(t *testing.T) {
	rules := edgetest.Ingress(t, "ingress:\n  - {hostname: web.internal, service: \"https://127.0.0.1:8443\"}\n  - {hostname: dns.internal, service: \"udp://127.0.0.1:53\"}\n  - service: http_status:404\n")
	for _, service := range []string{"web.internal", "dns.internal", "other.internal"} {
		if _, err := connector.ForwardRule(rules, service); err == nil || !strings.Contains(err.Error(), "a forward needs a tcp://, http:// or unix: origin") {
			t.Errorf("ForwardRule(%q) = %v", service, err)
		}
	}
}

// TestForwardMaxConns holds MaxConns connections: the next is reset at
// accept, and served once one closes.
func TestForwardMaxConns(t *testing.T) {
	origin := edgetest.EchoTCP(t, "127.0.0.1")
	rules := edgetest.Ingress(t, fmt.Sprintf("ingress:\n  - service: \"tcp://%s\"\n", origin))
	e, err := relay.New(relay.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &connector.Forward{Service: "any", Rules: rules, Engine: e, MaxConns: 2, Logger: edgetest.Logger()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.Serve(ctx, ln)
	echo := func(c net.Conn) error {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("hi")); err != nil {
			return err
		}
		b := make([]byte, 2)
		_, err := io.ReadFull(c, b)
		return err
	}
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := echo(c); err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err == nil {
		if echo(c) == nil {
			t.Error("a third connection was served over MaxConns 2")
		}
		c.Close()
	}
	held[0].Close()
	for deadline := time.Now().Add(5 * time.Second); f.Open() > 1 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	c, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := echo(c); err != nil {
		t.Errorf("not served after one connection closed: %v", err)
	}
}
