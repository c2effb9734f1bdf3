package tunnel

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestAdvertiseEdges: on both transports, the edge's lists reach the
// connector's OnEdges in order, the connector cannot send one, and a
// list that does not encode is refused before anything is sent.
func TestAdvertiseEdges(t *testing.T) {
	forEach(t, func(t *testing.T, tr transportCase, addr string) {
		got := make(chan []string, 4)
		cfg := testConfig()
		cfg.OnEdges = func(a []string) { got <- a }
		p := newPairConfig(t, tr, addr, cfg)
		lists := [][]string{{"198.18.0.1:7844"}, {"198.18.0.1:7844", "edge2.example.test:7844", "[fd00::2]:7844"}}
		for _, l := range lists {
			if err := p.edge.AdvertiseEdges(l); err != nil {
				t.Fatal(err)
			}
		}
		for _, want := range lists {
			select {
			case l := <-got:
				if !slices.Equal(l, want) {
					t.Fatalf("connector heard %v, want %v", l, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the edge list did not reach the connector")
			}
		}
		if err := p.connector.AdvertiseEdges(lists[0]); !errors.Is(err, ErrWrongSide) {
			t.Fatalf("connector side: %v", err)
		}
		for _, bad := range [][]string{nil, {"no-port"}, {"a b:1"}, {"x:0"}, {strings.Repeat("a", 300) + ":1"}} {
			if err := p.edge.AdvertiseEdges(bad); !errors.Is(err, ErrBadEdges) {
				t.Fatalf("%q: %v, want ErrBadEdges", bad, err)
			}
		}
		// The connection still works.
		if err := p.edge.AdvertiseEdges(lists[0]); err != nil {
			t.Fatal(err)
		}
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			t.Fatal("no list after the refused ones")
		}
	})
}
