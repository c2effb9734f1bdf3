package ingress

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// selfSignedPEM returns a PEM self-signed CA certificate.
func selfSignedPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "onramp test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// oneRule parses a configuration whose first rule has the given service
// and originRequest (flow mapping body) and returns that rule.
func oneRule(t *testing.T, service, origin string) *Rule {
	t.Helper()
	y := "ingress:\n  - hostname: o.test\n    service: " + service + "\n"
	if origin != "" {
		y += "    originRequest: {" + origin + "}\n"
	}
	c, err := Parse([]byte(y + catchAll))
	if err != nil {
		t.Fatal(err)
	}
	return c.Match("o.test", "")
}

// echoServer accepts connections on ln and echoes them until ln closes.
func echoServer(t *testing.T, ln net.Listener) {
	t.Helper()
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
}

func checkEcho(t *testing.T, c net.Conn) {
	t.Helper()
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Fatalf("echo: %q, %v", line, err)
	}
}

func TestDialTCP(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if network == "tcp6" {
				addr = "[::1]:0"
			}
			ln, err := net.Listen(network, addr)
			if err != nil {
				t.Skipf("no %s loopback: %v", network, err)
			}
			echoServer(t, ln)
			for _, scheme := range []string{"tcp", "http"} {
				r := oneRule(t, scheme+"://"+ln.Addr().String(), "")
				c, err := r.DialStream(context.Background(), false)
				if err != nil {
					t.Fatal(err)
				}
				if _, ok := c.(*net.TCPConn); !ok {
					t.Errorf("%s dial returned %T, want *net.TCPConn", scheme, c)
				}
				checkEcho(t, c)
			}
		})
	}
}

func TestDialUnix(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "app.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Skipf("no unix sockets: %v", err)
	}
	echoServer(t, ln)
	c, err := oneRule(t, "unix:"+sock, "").DialStream(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	checkEcho(t, c)
}

func TestDialHTTPS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "proto="+r.Proto+" tls="+r.TLS.NegotiatedProtocol)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // failed handshakes are the point
	srv.StartTLS()
	defer srv.Close()
	caPath := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	service := "https://" + srv.Listener.Addr().String()
	get := func(t *testing.T, c net.Conn) string {
		t.Helper()
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: o.test\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	for _, tt := range []struct{ name, origin string }{
		{"caPool", "caPool: " + caPath},
		{"caPool and originServerName", "caPool: " + caPath + ", originServerName: example.com"},
		{"noTLSVerify", "noTLSVerify: true"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := oneRule(t, service, tt.origin).DialStream(context.Background(), false)
			if err != nil {
				t.Fatal(err)
			}
			if got := get(t, c); got != "proto=HTTP/1.1 tls=http/1.1" {
				t.Errorf("origin saw %q", got)
			}
		})
	}
	t.Run("untrusted", func(t *testing.T) {
		c, err := oneRule(t, service, "").DialStream(context.Background(), false)
		if err == nil {
			c.Close()
			t.Fatal("dial to an untrusted origin succeeded")
		}
		var uerr x509.UnknownAuthorityError
		if !errors.As(err, &uerr) || !strings.HasPrefix(err.Error(), "ingress: tls handshake with "+service+": ") {
			t.Errorf("error %q (%T), want a wrapped x509.UnknownAuthorityError", err, err)
		}
	})
	t.Run("wrong name", func(t *testing.T) {
		c, err := oneRule(t, service, "caPool: "+caPath+", originServerName: wrong.test").DialStream(context.Background(), false)
		if err == nil {
			c.Close()
			t.Fatal("dial with a wrong originServerName succeeded")
		}
		var herr x509.HostnameError
		if !errors.As(err, &herr) {
			t.Errorf("error %q, want a wrapped x509.HostnameError", err)
		}
	})
	t.Run("passthrough", func(t *testing.T) {
		c, err := oneRule(t, service, "").DialStream(context.Background(), true)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, ok := c.(*net.TCPConn); !ok {
			t.Errorf("passthrough dial returned %T, want *net.TCPConn", c)
		}
	})
}

func TestDialRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for _, scheme := range []string{"tcp", "http", "https"} {
		_, err := oneRule(t, scheme+"://"+addr, "").DialStream(context.Background(), false)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("%s: error %v does not unwrap to ECONNREFUSED", scheme, err)
		}
		if want := "ingress: dial " + scheme + "://" + addr + ": "; err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: error %q, want prefix %q", scheme, err, want)
		}
		var op *net.OpError
		if !errors.As(err, &op) {
			t.Errorf("%s: error %v does not unwrap to *net.OpError", scheme, err)
		}
	}
	_, err = oneRule(t, "unix:"+filepath.Join(t.TempDir(), "none.sock"), "").DialStream(context.Background(), false)
	if !errors.Is(err, syscall.ENOENT) {
		t.Errorf("unix: error %v does not unwrap to ENOENT", err)
	}
}

func TestDialWrongScheme(t *testing.T) {
	for _, tt := range []struct {
		service string
		stream  bool
		want    string
	}{
		{"udp://127.0.0.1:53", true, "ingress: dial stream: udp://127.0.0.1:53 is not a stream service"},
		{"http_status:404", true, "ingress: dial stream: http_status:404 is not a stream service"},
		{"tcp://127.0.0.1:7", false, "ingress: dial udp: tcp://127.0.0.1:7 is not a udp service"},
		{"http_status:404", false, "ingress: dial udp: http_status:404 is not a udp service"},
	} {
		r := oneRule(t, tt.service, "")
		var err error
		if tt.stream {
			_, err = r.DialStream(context.Background(), false)
		} else {
			_, err = r.DialUDP(context.Background())
		}
		var se *SchemeError
		if !errors.As(err, &se) || !errors.Is(err, ErrWrongScheme) || err.Error() != tt.want {
			t.Errorf("%s: error %v, want %q", tt.service, err, tt.want)
		}
	}
}

func TestDialUDP(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			t.Logf("skip %s: %v", addr, err)
			continue
		}
		defer pc.Close()
		go func() {
			buf := make([]byte, 1500)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo(buf[:n], from)
			}
		}()
		c, err := oneRule(t, "udp://"+pc.LocalAddr().String(), "").DialUDP(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 16)
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != "ping" {
			t.Errorf("udp echo via %s: %q, %v", addr, buf[:n], err)
		}
		c.Close()
	}
}

func TestDialContextCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := oneRule(t, "tcp://127.0.0.1:9", "").DialStream(ctx, false)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
}
