package connector_test

import (
	"net"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l4proxy/connector"
	"github.com/onramp-net/onramp/l4proxy/edge"
	"github.com/onramp-net/onramp/l4proxy/edge/edgetest"
)

// TestUDPUnrepliedClosed: the connector closes the origin socket of a flow
// the origin never answered after its own short timeout, without waiting
// for the edge's (a minute here; its FlowClose may also be lost), and the
// flow opens again at the user's next datagram.
func TestUDPUnrepliedClosed(t *testing.T) {
	t.Cleanup(connector.SetFlowUnrepliedIdle(300 * time.Millisecond))
	e := edgetest.Start(t, "quic", "127.0.0.1", edge.Options{UDPFlowIdle: time.Minute, UDPUnrepliedIdle: time.Minute})
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	heard := make(chan string, 16)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, _, err := silent.ReadFrom(buf)
			if err != nil {
				return
			}
			heard <- string(buf[:n])
		}
	}()
	r := e.StartConnector("ingress:\n  - service: udp://"+silent.LocalAddr().String()+"\n", nil)
	user, err := net.Dial("udp", e.ServeUDP("silent"))
	if err != nil {
		t.Fatal(err)
	}
	defer user.Close()
	hear := func(msg string) {
		t.Helper()
		for deadline := time.After(5 * time.Second); ; {
			user.Write([]byte(msg))
			select {
			case got := <-heard:
				if got == msg {
					return
				}
			case <-time.After(200 * time.Millisecond):
			case <-deadline:
				t.Fatalf("the origin never got %q", msg)
			}
		}
	}
	hear("one")
	start := time.Now()
	for edgetest.Metric(t, r.Registry, "onramp_connector_udp_flows_open", "") != 0 {
		if time.Since(start) > 5*time.Second {
			t.Fatal("the connector kept the unanswered flow's socket")
		}
		time.Sleep(20 * time.Millisecond)
	}
	hear("two")
	if v := edgetest.Metric(t, r.Registry, "onramp_connector_udp_flows_total", ""); v != 2 {
		t.Errorf("connector opened %v flows, want 2 (the flow opened again)", v)
	}
}
