package connector

import (
	"slices"
)

// The connector's edges: the token's at first, then the list the edges
// advertise on their connections (edges added after the token was made
// included, edges removed left out). Connections are spread evenly over
// them: a new dial goes to the edge with the fewest connections (live or
// being dialed), and a new list moves the surplus connections of crowded
// or removed edges to the others, each by dialing the new edge first and
// draining the old connection once the new one is up.

// edgeList returns the edges to dial now.
func (c *Connector) edgeList() []string {
	if p := c.advertised.Load(); p != nil {
		return *p
	}
	return c.opts.Token.Edges
}

// onEdges is the transports' Config.OnEdges: an edge advertised its list.
func (c *Connector) onEdges(addrs []string) {
	addrs = slices.Compact(slices.Sorted(slices.Values(addrs)))
	if cur := c.advertised.Load(); cur != nil && slices.Equal(*cur, addrs) {
		return
	}
	c.advertised.Store(&addrs)
	c.log.Info("connector: the edges advertise a new list; spreading the connections over it", "edges", addrs)
	c.rebalance()
}

// pickEdge returns the edge a new connection of slot should dial: the
// one of the list with the fewest connections, live or being dialed,
// leaving out those in failed (unless all are); ties go round by slot. It
// counts the dial until done is called.
func (c *Connector) pickEdge(slot int, failed map[string]bool) (edge string, done func()) {
	edges := c.edgeList()
	c.mu.Lock()
	defer c.mu.Unlock()
	load := c.loadLocked()
	best, bestN := "", 0
	for k := range edges {
		e := edges[(slot+k)%len(edges)]
		if failed[e] && len(failed) < len(edges) {
			continue
		}
		if n := load[e]; best == "" || n < bestN {
			best, bestN = e, n
		}
	}
	c.dialing[best]++
	return best, func() {
		c.mu.Lock()
		c.dialing[best]--
		c.mu.Unlock()
	}
}

// loadLocked counts the connections per edge, live and being dialed, not
// counting those moving away.
func (c *Connector) loadLocked() map[string]int {
	load := map[string]int{}
	for ec := range c.conns {
		switch {
		case ec.retiring:
		case ec.moving == "":
			load[ec.edge]++
		default:
			load[ec.moving]++
		}
	}
	for e, n := range c.dialing {
		load[e] += n
	}
	return load
}

// rebalance moves connections so that they spread evenly over the list
// (no edge two more than another): first those on edges no longer listed,
// then from the most crowded edges, each to the least loaded edge. The keep loop of each connection to move dials its new
// edge (watch).
func (c *Connector) rebalance() {
	edges := c.edgeList()
	c.mu.Lock()
	defer c.mu.Unlock()
	load := c.loadLocked()
	least := func() string {
		best, bestN := "", 0
		for _, e := range edges {
			if n := load[e]; best == "" || n < bestN {
				best, bestN = e, n
			}
		}
		return best
	}
	// Deterministic order: connections by edge, oldest first.
	conns := make([]*edgeConn, 0, len(c.conns))
	for ec := range c.conns {
		if ec.moving == "" && !ec.retiring {
			conns = append(conns, ec)
		}
	}
	slices.SortFunc(conns, func(a, b *edgeConn) int { return a.since.Compare(b.since) })
	move := func(ec *edgeConn, to string) {
		load[ec.edge]--
		load[to]++
		ec.moving = to
		select {
		case ec.move <- to:
		default:
		}
	}
	// Off the edges no longer listed.
	for _, ec := range conns {
		if !slices.Contains(edges, ec.edge) {
			move(ec, least())
		}
	}
	// Then from crowded edges, while a move evens the spread.
	for _, ec := range conns {
		if ec.moving != "" {
			continue
		}
		if to := least(); load[ec.edge]-load[to] >= 2 {
			move(ec, to)
		}
	}
}
