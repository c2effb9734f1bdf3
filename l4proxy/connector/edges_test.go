package connector

import (
	"maps"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l4proxy/ingress"
	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

// TestEdgeSpread: new dials go to the least used edge of the list, a
// failed edge is skipped until every edge failed, and a new advertised
// list moves connections off removed edges and evens the spread over
// added ones, moving no more than needed.
func TestEdgeSpread(t *testing.T) {
	c, err := New(Options{Ingress: &ingress.Config{}, Token: tunnel.Token{Edges: []string{"a:1", "b:1"}}, Connections: 4})
	if err != nil {
		t.Fatal(err)
	}
	var dones []func()
	got := map[string]int{}
	for slot := range 4 {
		e, done := c.pickEdge(slot, nil)
		got[e]++
		dones = append(dones, done)
	}
	if !maps.Equal(got, map[string]int{"a:1": 2, "b:1": 2}) {
		t.Fatalf("4 dials at once went to %v, want 2 and 2", got)
	}
	for _, d := range dones {
		d()
	}
	if e, done := c.pickEdge(0, map[string]bool{"a:1": true}); e != "b:1" {
		t.Fatalf("with a:1 failed, picked %s", e)
	} else {
		done()
	}
	if e, done := c.pickEdge(0, map[string]bool{"a:1": true, "b:1": true}); e == "" {
		t.Fatal("with every edge failed, picked none")
	} else {
		done()
	}

	// Four live connections, two on each edge.
	add := func(edge string, age time.Duration) *edgeConn {
		ec := &edgeConn{edge: edge, since: time.Now().Add(-age), move: make(chan string, 1)}
		c.conns[ec] = struct{}{}
		return ec
	}
	conns := []*edgeConn{add("a:1", 4*time.Second), add("a:1", 3*time.Second), add("b:1", 2*time.Second), add("b:1", time.Second)}
	moves := func() map[string]int {
		m := map[string]int{}
		for _, ec := range conns {
			select {
			case to := <-ec.move:
				m[ec.edge+">"+to]++
				ec.edge, ec.moving = to, "" // as if the move was done
			default:
			}
		}
		return m
	}
	// Edge c added: one connection moves there.
	c.onEdges([]string{"b:1", "c:1", "a:1"})
	if m := moves(); !maps.Equal(m, map[string]int{"a:1>c:1": 1}) {
		t.Fatalf("edge c added: moves %v, want one from a to c", m)
	}
	// The same list again: nothing moves.
	c.onEdges([]string{"a:1", "b:1", "c:1"})
	if m := moves(); len(m) != 0 {
		t.Fatalf("same list: moves %v", m)
	}
	// Edge b removed: its two connections go to a and c.
	c.onEdges([]string{"a:1", "c:1"})
	if m := moves(); !maps.Equal(m, map[string]int{"b:1>a:1": 1, "b:1>c:1": 1}) {
		t.Fatalf("edge b removed: moves %v, want one to a and one to c", m)
	}
	if got := c.edgeList(); len(got) != 2 {
		t.Fatalf("edge list %v", got)
	}
}
