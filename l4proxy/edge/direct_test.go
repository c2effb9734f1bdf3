package edge_test

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/onramp-net/onramp/dataplane/relay"
	"github.com/onramp-net/onramp/l4proxy/edge"
	"github.com/onramp-net/onramp/l4proxy/edge/edgetest"
)

// readProxyV2 reads a PROXY protocol v2 header from r as an origin would,
// strictly: the signature, version 2, PROXY or LOCAL, TCP over IPv4 or
// IPv6, the length the family needs. It returns the source and
// destination (zero for LOCAL).
func readProxyV2(r io.Reader) (src, dst netip.AddrPort, err error) {
	var h [16]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return src, dst, err
	}
	if !bytes.Equal(h[:12], []byte("\r\n\r\n\x00\r\nQUIT\n")) {
		return src, dst, fmt.Errorf("no PROXY v2 signature: %q", h[:12])
	}
	n := int(binary.BigEndian.Uint16(h[14:]))
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return src, dst, err
	}
	switch {
	case h[12] == 0x20:
		return src, dst, nil
	case h[12] != 0x21:
		return src, dst, fmt.Errorf("version/command %#x", h[12])
	case h[13] == 0x11 && n == 12:
		s, _ := netip.AddrFromSlice(body[0:4])
		d, _ := netip.AddrFromSlice(body[4:8])
		return netip.AddrPortFrom(s, binary.BigEndian.Uint16(body[8:])), netip.AddrPortFrom(d, binary.BigEndian.Uint16(body[10:])), nil
	case h[13] == 0x21 && n == 36:
		s, _ := netip.AddrFromSlice(body[0:16])
		d, _ := netip.AddrFromSlice(body[16:32])
		return netip.AddrPortFrom(s, binary.BigEndian.Uint16(body[32:])), netip.AddrPortFrom(d, binary.BigEndian.Uint16(body[34:])), nil
	}
	return src, dst, fmt.Errorf("family %#x with %d bytes of addresses", h[13], n)
}

// ppOrigin answers each connection with the PROXY header it read
// ("src dst\n") and then echoes.
func ppOrigin(t *testing.T, host string) string {
	return edgetest.ServeTCPOrigin(t, host, func(c net.Conn) {
		br := bufio.NewReader(c)
		src, dst, err := readProxyV2(br)
		if err != nil {
			fmt.Fprintf(c, "error %v\n", err)
			return
		}
		fmt.Fprintf(c, "%s %s\n", src, dst)
		io.Copy(c, br)
		c.(*net.TCPConn).CloseWrite()
	})
}

func directEdge(t *testing.T, host string, s relay.Strategy) *edgetest.Env {
	t.Helper()
	e, err := relay.New(relay.Config{Strategy: s})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return edgetest.Start(t, "quic", host, edge.Options{Relay: e})
}

// TestDirectBinding relays a TCP binding straight to its origin, with and
// without a PROXY v2 header, over IPv4 and IPv6, with both strategies that
// need no eBPF: the origin sees the user's address, the user its echo, and
// the edge counts the connection as a stream.
func TestDirectBinding(t *testing.T) {
	for _, s := range []relay.Strategy{relay.Splice, relay.Copy} {
		for _, host := range []string{"127.0.0.1", "::1"} {
			t.Run(s.String()+"/"+host, func(t *testing.T) {
				e := directEdge(t, host, s)
				bind := func(b edge.Binding) string {
					ln := e.Listen()
					e.Go(func() { e.Server.ServeTCP(e.Ctx, ln, b) })
					return ln.Addr().String()
				}
				plain := bind(edge.Binding{Origin: edgetest.EchoTCP(t, host)})
				pp := bind(edge.Binding{Origin: ppOrigin(t, host), ProxyProtocol: true})

				c, err := net.Dial("tcp", plain)
				if err != nil {
					t.Fatal(err)
				}
				payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
				go func() {
					c.Write(payload)
					c.(*net.TCPConn).CloseWrite()
				}()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				got, err := io.ReadAll(c)
				if err != nil || !bytes.Equal(got, payload) {
					t.Fatalf("echo through the direct binding: %d bytes of %d, %v", len(got), len(payload), err)
				}
				c.Close()

				c, err = net.Dial("tcp", pp)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				want := fmt.Sprintf("%s %s\n", c.LocalAddr(), c.RemoteAddr())
				if line != want {
					t.Errorf("the origin read the PROXY header %q, want %q", line, want)
				}
				fmt.Fprint(c, "after the header")
				c.(*net.TCPConn).CloseWrite()
				rest, _ := io.ReadAll(br)
				if string(rest) != "after the header" {
					t.Errorf("echo after the header: %q", rest)
				}
				if v := edgetest.Metric(t, e.Registry, "onramp_edge_streams_total", "tcp"); v != 2 {
					t.Errorf("onramp_edge_streams_total{kind=tcp} = %v, want 2", v)
				}
			})
		}
	}
}

// TestDirectRoutes routes HTTP by Host and TLS by SNI to direct origins:
// the HTTP origin gets the whole request (head read by the edge, body
// relayed), the TLS origin is verified by the user against its own
// certificate (the edge passes TLS through), an origin that refuses
// connections gives HTTP users a 502.
func TestDirectRoutes(t *testing.T) {
	e := directEdge(t, "127.0.0.1", relay.Splice)
	httpOrigin := edgetest.ServeTCPOrigin(t, "127.0.0.1", func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		body, _ := io.ReadAll(req.Body)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s %d", len(req.Host)+1+len(fmt.Sprint(len(body))), req.Host, len(body))
	})
	cert, pool := selfSignedCert(t, "secure.direct.test")
	tlsLn, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer tlsLn.Close()
	go func() {
		for {
			c, err := tlsLn.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				if tc.Handshake() == nil {
					io.WriteString(c, "hello from "+tc.ConnectionState().ServerName)
				}
			}()
		}
	}()
	if err := e.Server.SetRoutes([]edge.Route{
		{Hostname: "web.direct.test", Origin: httpOrigin},
		{Hostname: "secure.direct.test", Origin: tlsLn.Addr().String()},
		{Hostname: "down.direct.test", Origin: edgetest.ClosedPort(t, "127.0.0.1")},
	}); err != nil {
		t.Fatal(err)
	}
	httpAddr, tlsAddr := e.ServeHTTP(), e.ServeTLS()

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{}).DialContext, DisableKeepAlives: true,
	}}
	body := strings.Repeat("x", 300000)
	req, _ := http.NewRequest("POST", "http://"+httpAddr+"/upload", strings.NewReader(body))
	req.Host = "web.direct.test"
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(got) != fmt.Sprintf("web.direct.test %d", len(body)) {
		t.Errorf("HTTP by Host to a direct origin: %d %q", resp.StatusCode, got)
	}
	req, _ = http.NewRequest("GET", "http://"+httpAddr+"/", nil)
	req.Host = "down.direct.test"
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 502 {
		t.Errorf("HTTP to an origin that refuses connections: %d, want 502", resp.StatusCode)
	}

	tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", tlsAddr, &tls.Config{ServerName: "secure.direct.test", RootCAs: pool})
	if err != nil {
		t.Fatalf("TLS by SNI to a direct origin, verified against its certificate: %v", err)
	}
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	hello, err := io.ReadAll(tc)
	tc.Close()
	if err != nil && !errors.Is(err, io.EOF) || string(hello) != "hello from secure.direct.test" {
		t.Errorf("TLS origin said %q, %v", hello, err)
	}
	if v := edgetest.Metric(t, e.Registry, "onramp_edge_errors_total", "origin"); v != 1 {
		t.Errorf("onramp_edge_errors_total{kind=origin} = %v, want 1", v)
	}
}

// selfSignedCert returns a certificate for name and a pool that trusts it.
func selfSignedCert(t *testing.T, name string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// TestDirectSpoofedProxyHeader plays a user who sends a PROXY v2 header
// of his own through a route that adds one: the origin reads the edge's
// header (the user's real address) first, and the forged one only as
// data.
func TestDirectSpoofedProxyHeader(t *testing.T) {
	e := directEdge(t, "127.0.0.1", relay.Splice)
	ln := e.Listen()
	e.Go(func() {
		e.Server.ServeTCP(e.Ctx, ln, edge.Binding{Origin: ppOrigin(t, "127.0.0.1"), ProxyProtocol: true})
	})
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	forged := append([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c"), 203, 0, 113, 7, 127, 0, 0, 1, 0x30, 0x39, 0x00, 0x50)
	c.Write(forged)
	c.(*net.TCPConn).CloseWrite()
	br := bufio.NewReader(c)
	line, _ := br.ReadString('\n')
	if want := fmt.Sprintf("%s %s\n", c.LocalAddr(), c.RemoteAddr()); line != want {
		t.Errorf("the origin read the header %q, want the edge's %q", line, want)
	}
	rest, _ := io.ReadAll(br)
	if !bytes.Equal(rest, forged) {
		t.Errorf("the forged header did not reach the origin as data: %q", rest)
	}
}

// TestDirectStalledUsers plays users who ask an origin for an endless
// stream and never read: each relay holds back (the origin's writes
// block) instead of buffering, at most MaxPipes pipes are in use (the
// rest copy through pooled buffers), and the edge's heap stays small.
func TestDirectStalledUsers(t *testing.T) {
	eng, err := relay.New(relay.Config{Strategy: relay.Splice, MaxPipes: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	e := edgetest.Start(t, "quic", "127.0.0.1", edge.Options{Relay: eng})
	origin := edgetest.ServeTCPOrigin(t, "127.0.0.1", func(c net.Conn) {
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	ln := e.Listen()
	e.Go(func() { e.Server.ServeTCP(e.Ctx, ln, edge.Binding{Origin: origin}) })
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const users = 32
	var conns []net.Conn
	for range users {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	time.Sleep(time.Second)
	runtime.ReadMemStats(&after)
	st := eng.Stats()
	t.Logf("%d stalled users: %+v, heap %d MiB -> %d MiB", users, st, before.HeapInuse>>20, after.HeapInuse>>20)
	if st.PipesInUse > 4 {
		t.Errorf("%d pipes in use, MaxPipes 4", st.PipesInUse)
	}
	if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 32<<20 {
		t.Errorf("heap grew %d MiB for %d stalled users", grew>>20, users)
	}
	// They read again: every one of them is served.
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, 1<<20)); err != nil {
			t.Fatalf("user %d after reading again: %v", i, err)
		}
	}
}
