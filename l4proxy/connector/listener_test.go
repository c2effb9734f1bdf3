package connector_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l4proxy/edge"
	"github.com/onramp-net/onramp/l4proxy/edge/edgetest"
)

// TestListenerSchemes: which edge listener reaches which service. The TLS
// listener reaches only the rule with tlsPassthrough: true (an https rule
// meant for HTTP, a tcp rule meant for a binding and the catch-all close
// the connection); the HTTP listener reaches http, https and unix rules
// (HTTP over the socket) but gets 403 naming the rule and the listener for
// a tcp rule, which the port binding reaches.
func TestListenerSchemes(t *testing.T) {
	forEach(t, func(t *testing.T, proto string) {
		e := edgetest.Start(t, proto, "127.0.0.1", edge.Options{})
		tlsOrigin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "tls origin sni=%s", r.TLS.ServerName)
		}))
		t.Cleanup(tlsOrigin.Close)
		sock := filepath.Join(t.TempDir(), "app.sock")
		uln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		usrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "unix origin %s", r.URL.Path)
		})}
		go usrv.Serve(uln)
		t.Cleanup(func() { usrv.Close() })
		db := greeter(t, "db")

		r := e.StartConnector(fmt.Sprintf(`ingress:
  - {hostname: pass.example.com, service: "tcp://%[1]s", tlsPassthrough: true}
  - {hostname: web.example.com, service: "https://%[1]s", originRequest: {noTLSVerify: true}}
  - {hostname: sock.example.com, service: "unix:%[2]s"}
  - {hostname: db.example.com, service: "tcp://%[3]s"}
  - service: "http_status:404"
`, tlsOrigin.Listener.Addr(), sock, db), nil)
		e.Route("*.example.com")
		tlsAddr, httpAddr, binding := e.ServeTLS(), e.ServeHTTP(), e.ServeTCP("db.example.com")

		// TLS by SNI.
		pool := x509.NewCertPool()
		pool.AddCert(tlsOrigin.Certificate())
		for sni, ok := range map[string]bool{
			"pass.example.com":  true,
			"web.example.com":   false, // https: the connector's TLS, for HTTP users
			"db.example.com":    false, // tcp, for the binding
			"other.example.com": false, // the catch-all
		} {
			c, err := net.DialTimeout("tcp", tlsAddr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			tc := tls.Client(c, &tls.Config{ServerName: sni, RootCAs: pool, InsecureSkipVerify: sni != "pass.example.com"})
			err = tc.Handshake()
			if ok != (err == nil) {
				t.Errorf("TLS by SNI %s: handshake error %v, want success %v", sni, err, ok)
			}
			if err == nil {
				fmt.Fprintf(tc, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", sni)
				b, _ := io.ReadAll(tc)
				if !strings.Contains(string(b), "tls origin sni="+sni) {
					t.Errorf("TLS by SNI %s: got %q", sni, b)
				}
			}
			c.Close()
		}

		// HTTP by Host.
		for host, want := range map[string]string{
			"web.example.com":  "200 tls origin sni=",
			"sock.example.com": "200 unix origin /x",
			"db.example.com":   `403 403 Forbidden: stream refused by connector: not for this listener: ingress rule 3 (hostname "db.example.com") is a tcp service, for port bindings: the http listener may not reach it`,
		} {
			u := connect(t, httpAddr)
			code, body := u.raw(host, "/x")
			if got := fmt.Sprintf("%d %s", code, body); !strings.HasPrefix(got, want) {
				t.Errorf("HTTP by Host %s: %q, want %q", host, got, want)
			}
		}

		// The port binding reaches the tcp service.
		b := connect(t, binding)
		if got := b.line(); got != "db" {
			t.Errorf("binding: %q, want the db greeting", got)
		}
		b.roundTrip("hello")

		waitConnectorMetric(t, r, "listener", 4)
	})
}

func waitConnectorMetric(t *testing.T, r *edgetest.Running, kind string, want float64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		v := edgetest.Metric(t, r.Registry, "onramp_connector_errors_total", kind)
		if v == want {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("connector errors_total{%s} = %v, want %v", kind, v, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
