package edge_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l4proxy/connector"
	"github.com/onramp-net/onramp/l4proxy/edge"
	"github.com/onramp-net/onramp/l4proxy/edge/edgetest"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

// TestTunnelFollowsName: routes and bindings name their tunnel. Deleted,
// the tunnel's connector is dropped with the reason and its users find it
// offline (HTTP 502 "tunnel offline", TCP closed) instead of being sent to
// the old ID; created again under the same name (a new ID and secret), it
// is served by the same route and binding at once, without restarting
// their listeners.
func TestTunnelFollowsName(t *testing.T) {
	forEach(t, func(t *testing.T, proto string) {
		e := edgetest.Start(t, proto, "127.0.0.1", edge.Options{})
		echo := edgetest.EchoTCP(t, "127.0.0.1")
		udpEcho := edgetest.EchoUDP(t, "127.0.0.1", "")
		rules := fmt.Sprintf("ingress:\n  - hostname: echo.internal\n    service: tcp://%s\n  - hostname: udp.internal\n    service: udp://%s\n  - service: http://%s\n",
			echo, udpEcho, httpOrigin(t, "web"))
		one := func(o *connector.Options) { o.Connections = 1 }
		first := e.StartConnector(rules, one)
		e.Route("app.example.test")
		hc := httpClient(e.ServeHTTP())
		bound := e.ServeTCP("echo.internal")
		// One UDP user throughout: its flow must not stay with the
		// deleted tunnel.
		udpUser, err := net.Dial("udp", e.ServeUDP("udp.internal"))
		if err != nil {
			t.Fatal(err)
		}
		defer udpUser.Close()
		served := func(when string) {
			t.Helper()
			if code, body := get(t, hc, "http://app.example.test/x"); code != 200 || body != "web host=app.example.test path=/x" {
				t.Errorf("%s: route: %d %q", when, code, body)
			}
			c := dial(t, bound)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, "ping")
			got := make([]byte, 4)
			if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping" {
				t.Errorf("%s: binding: %q, %v", when, got, err)
			}
			c.Close()
			if got := exchange(udpUser, "dns?", 30); got != "dns?" {
				t.Errorf("%s: udp binding: got %q", when, got)
			}
		}
		served("before")

		old := e.Token.TunnelID
		e.Auth.Delete(old) // edge tunnel delete: the store,
		e.Server.SetTunnels(map[string][16]byte{})
		e.Server.Revalidate(old) // then the connections
		select {
		case <-first.Done:
			var ae *tunnel.AuthError
			if err := first.Err(); !errors.As(err, &ae) || ae.Reason != tunnel.AuthTunnelDeleted {
				t.Errorf("connector of the deleted tunnel: Run = %v, want the AuthError of a deleted tunnel", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the deleted tunnel's connector still runs")
		}
		if code, body := get(t, hc, "http://app.example.test/x"); code != 502 || !strings.Contains(body, "tunnel offline") {
			t.Errorf("deleted: route: %d %q, want 502 tunnel offline", code, body)
		}
		c := dial(t, bound)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "ping")
		if n, err := c.Read(make([]byte, 4)); n != 0 || err == nil {
			t.Errorf("deleted: binding answered %d bytes, %v; want the connection closed", n, err)
		}
		if got := exchange(udpUser, "dns?", 2); got != "" {
			t.Errorf("deleted: udp binding answered %q", got)
		}

		again, err := tunnel.NewToken(e.Token.Edges, e.Token.EdgePin)
		if err != nil {
			t.Fatal(err)
		}
		e.Auth.Add(again) // edge tunnel create under the same name
		e.Server.SetTunnels(map[string][16]byte{edgetest.TunnelName: again.TunnelID})
		e.StartConnector(rules, func(o *connector.Options) { o.Token, o.Connections = again, 1 })
		served("created again")
	})
}
