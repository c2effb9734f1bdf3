package connector

import (
	"strings"
	"testing"

	"github.com/onramp-net/onramp/l4proxy/ingress"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

// TestAdmits is the table of which listener kind may use which service:
// port bindings anything a stream can carry, the HTTP listener no tcp,
// the TLS listener only tlsPassthrough rules; no stream a udp rule.
func TestAdmits(t *testing.T) {
	cfg, err := ingress.Parse([]byte(`ingress:
  - {hostname: tcp.test, service: "tcp://198.18.2.10:1"}
  - {hostname: udp.test, service: "udp://198.18.2.10:1"}
  - {hostname: http.test, service: "http://198.18.2.10:1"}
  - {hostname: https.test, service: "https://198.18.2.10:1"}
  - {hostname: unix.test, service: "unix:/run/app.sock"}
  - {hostname: status.test, service: "http_status:204"}
  - {hostname: tcp-pass.test, service: "tcp://198.18.2.10:1", tlsPassthrough: true}
  - {hostname: https-pass.test, service: "https://198.18.2.10:1", tlsPassthrough: true}
  - {hostname: unix-pass.test, service: "unix:/run/app.sock", tlsPassthrough: true}
  - service: "http_status:404"
`))
	if err != nil {
		t.Fatal(err)
	}
	const (
		ok   = tunnel.StatusOK
		no   = tunnel.StatusForbidden
		none = tunnel.StatusNoRule
	)
	for host, want := range map[string][3]tunnel.Status{ // tcp, http, tls
		"tcp.test":        {ok, no, no},
		"udp.test":        {none, none, none},
		"http.test":       {ok, ok, no},
		"https.test":      {ok, ok, no},
		"unix.test":       {ok, ok, no},
		"status.test":     {ok, ok, no},
		"tcp-pass.test":   {ok, no, ok},
		"https-pass.test": {ok, ok, ok},
		"unix-pass.test":  {ok, ok, ok},
		"other.test":      {ok, ok, no},
	} {
		rule := cfg.Match(host, "")
		for i, kind := range []tunnel.Kind{tunnel.KindTCP, tunnel.KindHTTP, tunnel.KindTLS} {
			status, msg := admits(kind, rule)
			if status != want[i] {
				t.Errorf("%s from the %s listener: %v (%q), want %v", host, kind, status, msg, want[i])
			}
			if status == no && (!strings.Contains(msg, rule.String()) || !strings.Contains(msg, kind.String()+" listener")) {
				t.Errorf("%s from the %s listener: refusal %q names neither the rule nor the listener", host, kind, msg)
			}
		}
	}
}

func TestRequestTarget(t *testing.T) {
	for in, want := range map[string]string{
		"/a/b?q":                  "/a/b?q",
		"*":                       "*",
		"http://wiki.test/admin":  "/admin",
		"http://wiki.test":        "/",
		"http://wiki.test?x=1":    "/?x=1",
		"HTTP://wiki.test/a;b?c":  "/a;b?c",
		"wiki.test:443":           "wiki.test:443",
		"http://u@wiki.test//x/.": "//x/.",
	} {
		if got := requestTarget(in); got != want {
			t.Errorf("requestTarget(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestForwardingHeader(t *testing.T) {
	for name, want := range map[string]bool{
		"X-Forwarded-For": true, "X-Forwarded-Proto": true, "X-Forwarded-Host": true, "X-Forwarded-Port": true,
		"X-Forwarded-Prefix": true, "X_Forwarded_For": true, "x-forwarded-ssl": true, "Forwarded": true,
		"X-Real-Ip": true, "X_real_ip": true, "X-Forwarded-": false, "X-Forwarded": false, "Forwarded-For": false,
		"X-Request-Id": false, "Host": false, "X-Realip": false,
	} {
		if got := forwardingHeader(name); got != want {
			t.Errorf("forwardingHeader(%q) = %v, want %v", name, got, want)
		}
	}
}
