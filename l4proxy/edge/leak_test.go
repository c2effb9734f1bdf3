package edge_test

import (
	"fmt"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l4proxy/edge"
	"github.com/onramp-net/onramp/l4proxy/edge/edgetest"
)

// TestNoGoroutineLeak: after an edge, a connector and some proxied
// connections (TCP and UDP) are stopped, the goroutines they ran are gone.
func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	for _, proto := range protos {
		t.Run(proto, func(t *testing.T) {
			e := edgetest.Start(t, proto, "127.0.0.1", edge.Options{})
			echo := edgetest.EchoTCP(t, "127.0.0.1")
			udp := edgetest.EchoUDP(t, "127.0.0.1", "")
			e.StartConnector(fmt.Sprintf("ingress:\n  - hostname: u\n    service: udp://%s\n  - service: tcp://%s\n", udp, echo), nil)
			addr := e.ServeTCP("t")
			for range 5 {
				c := dial(t, addr)
				c.Write([]byte("x"))
				c.CloseWrite()
				io.ReadAll(c)
			}
			open := dial(t, addr) // left open: closed by the shutdown
			open.Write([]byte("y"))
			io.ReadFull(open, make([]byte, 1))
			u, err := net.Dial("udp", e.ServeUDP("u"))
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			u.Write([]byte("z"))
			u.SetReadDeadline(time.Now().Add(2 * time.Second))
			u.Read(make([]byte, 10))
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= before+2 {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(50 * time.Millisecond)
	}
}
