// Package edgeconfigfuzz fuzzes the edge's configuration parser.
package edgeconfigfuzz

import (
	"testing"

	"github.com/onramp-net/onramp/cmd/edge/edgeconfig"
)

// FuzzParseEdgeConfig: any bytes either parse into a configuration that
// validates and has its defaults filled, or give an error; never a panic.
func FuzzParseEdgeConfig(f *testing.F) {
	for _, seed := range []string{
		"",
		"data: /x\nlisten: {tunnels: \"[::]:7844\", http: \":80\"}\n",
		"advertise: [\"198.18.0.1:7844\"]\nroutes: [{hostname: \"*.a.test\", tunnel: t}]\n",
		"bindings: [{listen: \"udp://[fd00::1]:53\", tunnel: t, service: dns}]\nlimits: {idleTimeout: 1m}\n",
		"routes: [{hostname: a.test, tunnel: BAD}]",
		"listen: [1, 2]",
		"&a [*a]",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := edgeconfig.Parse(data)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a config that does not validate: %v", err)
		}
		if c.Data == "" || c.Listen.Tunnels == "" || c.Limits.MaxStreamsPerTunnel <= 0 || c.Limits.UDPFlowIdle <= 0 {
			t.Fatalf("defaults not filled: %+v", c)
		}
		for _, b := range c.Bindings {
			if n, _ := b.Network(); n != "tcp" && n != "udp" {
				t.Fatalf("binding network %q accepted", n)
			}
		}
	})
}
