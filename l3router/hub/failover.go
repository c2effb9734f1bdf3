package hub

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onramp-net/onramp/l3router"
)

// Subnet failover. Connectors may advertise exactly the same subnet (the
// store allows it, the router routes it to one of them, its active owner,
// and accepts it as a source from each). The hub picks the active owner by
// the connectors' liveness, checking every FailoverConfig.Check:
//
//   - A connector is fresh while the edge has received an authenticated
//     message from it (handshake, keepalive or data) within StaleAfter, and
//     stale otherwise. The edge prints connector configs with a persistent
//     keepalive of ConnectorKeepalive, so a live connector is heard at
//     least that often even when idle: StaleAfter (3 s) is three missed
//     keepalives.
//   - A connector is up from the first check that finds it fresh until a
//     check finds it stale.
//   - The owners' preference order is their names' order: the first name
//     is the preferred owner.
//   - Failover: when the active owner is stale, the subnet moves to the
//     first owner in preference order that has been up for StaleAfter (a
//     connector that has just come back, or one whose keepalives come too
//     seldom, is no candidate). With none, it stays where it is.
//   - Failback: when an owner preferred to the active one has been up for
//     FailbackAfter (30 s), the subnet moves back to it. With FailbackAfter
//     negative it never does: the active owner keeps the subnet until it
//     goes stale.
//
// So the route moves away from a connector only after StaleAfter of
// silence, and back to it only after FailbackAfter without a silence of
// StaleAfter: a link that flaps with up periods shorter than FailbackAfter
// moves the subnet once, away from it, and not back while it flaps. The
// loss at a failover is the time to notice the silence, at most StaleAfter
// plus one Check after the last message received (under 5 s by default).

// Failover defaults.
const (
	// ConnectorKeepalive is the persistent keepalive the edge writes into
	// connectors' configurations: how often an idle connector says it is
	// alive.
	ConnectorKeepalive = time.Second
	// DefaultStaleAfter: a connector not heard from for this long is
	// stale (three keepalives missed).
	DefaultStaleAfter = 3 * time.Second
	// DefaultFailbackAfter: a preferred connector up for this long gets
	// its subnets back.
	DefaultFailbackAfter = 30 * time.Second
	// DefaultFailoverCheck is how often the hub checks.
	DefaultFailoverCheck = 250 * time.Millisecond
	// MinStaleAfter is the shortest StaleAfter: two keepalives.
	MinStaleAfter = 2 * ConnectorKeepalive
)

// Failover reasons, the values of the reason label of
// onramp_edge_l3_failovers_total.
const (
	ReasonStale    = "stale"
	ReasonFailback = "failback"
)

// FailoverConfig bounds the subnet failover; a zero field is its default.
type FailoverConfig struct {
	// StaleAfter: a connector not heard from for this long is stale
	// (DefaultStaleAfter; at least MinStaleAfter).
	StaleAfter time.Duration
	// FailbackAfter: a preferred connector up for this long gets its
	// subnets back (DefaultFailbackAfter); negative: never.
	FailbackAfter time.Duration
	// Check is how often the hub checks (DefaultFailoverCheck).
	Check time.Duration
}

func (c FailoverConfig) withDefaults() (FailoverConfig, error) {
	if c.StaleAfter == 0 {
		c.StaleAfter = DefaultStaleAfter
	}
	if c.FailbackAfter == 0 {
		c.FailbackAfter = DefaultFailbackAfter
	}
	if c.Check == 0 {
		c.Check = DefaultFailoverCheck
	}
	switch {
	case c.StaleAfter < 0 || c.Check < 0:
		return c, fmt.Errorf("failover: negative bound: %w", ErrInvalid)
	case c.Check > c.StaleAfter:
		return c, fmt.Errorf("failover: check every %v is longer than stale after %v: %w", c.Check, c.StaleAfter, ErrInvalid)
	case c.FailbackAfter > 0 && c.FailbackAfter < c.StaleAfter:
		return c, fmt.Errorf("failover: failback after %v is shorter than stale after %v: %w", c.FailbackAfter, c.StaleAfter, ErrInvalid)
	}
	return c, nil
}

// SharedSubnet is a subnet several connectors advertise.
type SharedSubnet struct {
	Prefix netip.Prefix
	// Owners are the connectors that advertise it, in preference order
	// (by name).
	Owners []string
	// Active is the connector the edge routes it to.
	Active string
	// Fresh tells, by owner, whether the last check found it fresh.
	Fresh []bool
	// Failovers counts the moves away from a stale active connector,
	// Failbacks the moves back to a preferred one.
	Failovers, Failbacks uint64
}

// failover is the hub's failover state, guarded by Hub.mu.
type failover struct {
	cfg FailoverConfig
	log *slog.Logger
	// up holds, for each connector of a shared subnet found fresh at the
	// last check, since when it has been found fresh at every check.
	up map[string]time.Time
	// moves counts the moves by subnet and reason.
	moves map[moveKey]uint64
}

type moveKey struct {
	prefix netip.Prefix
	reason string
}

// choose returns the owner a shared subnet moves to at now and why, or ""
// to leave it with active. owners are in preference order; up says since
// when each owner that is fresh now has been.
func (c *FailoverConfig) choose(owners []string, active string, up map[string]time.Time, now time.Time) (string, string) {
	upFor := func(o string) time.Duration {
		t, ok := up[o]
		if !ok {
			return -1
		}
		return now.Sub(t)
	}
	if c.FailbackAfter > 0 {
		for _, o := range owners {
			if o == active {
				break
			}
			if upFor(o) >= c.FailbackAfter {
				return o, ReasonFailback
			}
		}
	}
	if _, fresh := up[active]; fresh {
		return "", ""
	}
	for _, o := range owners {
		if o != active && upFor(o) >= c.StaleAfter {
			return o, ReasonStale
		}
	}
	return "", ""
}

// failoverLoop checks the shared subnets every Check until the hub
// closes.
func (h *Hub) failoverLoop() {
	defer close(h.foDone)
	t := time.NewTicker(h.fo.cfg.Check)
	defer t.Stop()
	for {
		select {
		case <-h.closing:
			return
		case now := <-t.C:
			h.checkFailover(now)
		}
	}
}

// move is a shared subnet's change of active owner.
type move struct {
	prefix           netip.Prefix
	from, to, reason string
}

// step records which owners of the shared subnets are up at now (fresh
// says which are fresh) and returns the moves the subnets make.
func (fo *failover) step(shared []l3router.SharedPrefix, fresh func(string) bool, now time.Time) []move {
	seen := map[string]bool{}
	for _, sp := range shared {
		for _, id := range sp.Owners {
			o := string(id)
			if seen[o] {
				continue
			}
			seen[o] = true
			if fresh(o) {
				if _, ok := fo.up[o]; !ok {
					fo.up[o] = now
				}
			} else {
				delete(fo.up, o)
			}
		}
	}
	for o := range fo.up {
		if !seen[o] {
			delete(fo.up, o)
		}
	}
	var moves []move
	for _, sp := range shared {
		active := string(sp.Active)
		if to, reason := fo.cfg.choose(preference(sp.Owners), active, fo.up, now); to != "" {
			moves = append(moves, move{sp.Prefix, active, to, reason})
		}
	}
	return moves
}

// checkFailover updates which connectors are fresh and moves the shared
// subnets whose active owner should change, logging and counting each
// move.
func (h *Hub) checkFailover(now time.Time) {
	shared := h.router.Shared()
	h.mu.Lock()
	defer h.mu.Unlock()
	fo := &h.fo
	for _, m := range fo.step(shared, func(o string) bool { return h.fresh(o, now) }, now) {
		if err := h.router.SetActive(m.prefix, l3router.PeerID(m.to)); err != nil {
			// The owners changed since Shared: the next check sees
			// them.
			fo.log.Debug("l3 subnet failover: "+err.Error(), "subnet", m.prefix)
			continue
		}
		fo.moves[moveKey{m.prefix, m.reason}]++
		switch m.reason {
		case ReasonStale:
			silent := "never heard from"
			if last := h.lastReceived(m.from); !last.IsZero() {
				silent = "silent for " + now.Sub(last).Round(time.Millisecond).String()
			}
			fo.log.Warn(fmt.Sprintf("l3 subnet failover: %v moved from connector %s to %s: %s is stale (%s, stale after %v)",
				m.prefix, m.from, m.to, m.from, silent, fo.cfg.StaleAfter),
				"subnet", m.prefix, "from", m.from, "to", m.to, "reason", m.reason)
		case ReasonFailback:
			fo.log.Info(fmt.Sprintf("l3 subnet failover: %v moved back from connector %s to %s: %s is preferred and has been up for %v (failback after %v)",
				m.prefix, m.from, m.to, m.to, now.Sub(fo.up[m.to]).Round(time.Millisecond), fo.cfg.FailbackAfter),
				"subnet", m.prefix, "from", m.from, "to", m.to, "reason", m.reason)
		}
	}
}

// fresh reports whether the live peer name was heard from within
// StaleAfter of now. h.mu is held.
func (h *Hub) fresh(name string, now time.Time) bool {
	last := h.lastReceived(name)
	return !last.IsZero() && now.Sub(last) <= h.fo.cfg.StaleAfter
}

// lastReceived returns when the device last heard from the live peer name
// (zero if never, or not live). h.mu is held.
func (h *Hub) lastReceived(name string) time.Time {
	p, ok := h.peers[name]
	if !ok || p.dev == nil {
		return time.Time{}
	}
	return p.dev.LastReceived()
}

// preference returns the owners' names in preference order: sorted.
func preference(ids []l3router.PeerID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = string(id)
	}
	slices.SortFunc(out, strings.Compare)
	return out
}

// Shared returns the subnets several connectors advertise, sorted, with
// their active connector and the failover's counts.
func (h *Hub) Shared() []SharedSubnet {
	shared := h.router.Shared()
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]SharedSubnet, 0, len(shared))
	for _, sp := range shared {
		s := SharedSubnet{Prefix: sp.Prefix, Owners: preference(sp.Owners), Active: string(sp.Active),
			Failovers: h.fo.moves[moveKey{sp.Prefix, ReasonStale}], Failbacks: h.fo.moves[moveKey{sp.Prefix, ReasonFailback}]}
		for _, o := range s.Owners {
			_, up := h.fo.up[o]
			s.Fresh = append(s.Fresh, up)
		}
		out = append(out, s)
	}
	return out
}

// Failover metrics: by subnet, which operators configure one by one, and
// connector, a few per subnet.
var (
	descFailovers = prometheus.NewDesc("onramp_edge_l3_failovers_total",
		"Times the edge moved a subnet that several connectors advertise to another of them, by reason: "+
			"stale (the active connector was not heard from within the stale bound), failback (back to the preferred connector, up for the failback bound).",
		[]string{"subnet", "reason"}, nil)
	descSubnetActive = prometheus.NewDesc("onramp_edge_l3_subnet_active",
		"1 for the connector the edge routes a subnet that several connectors advertise to, 0 for the others (standby).",
		[]string{"subnet", "connector"}, nil)
	descSubnetFresh = prometheus.NewDesc("onramp_edge_l3_subnet_connector_fresh",
		"1 if the edge heard from a connector of a subnet that several connectors advertise within the stale bound at its last check, else 0.",
		[]string{"subnet", "connector"}, nil)
)

func collectFailover(h *Hub, ch chan<- prometheus.Metric) {
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for _, s := range h.Shared() {
		sn := s.Prefix.String()
		ch <- prometheus.MustNewConstMetric(descFailovers, prometheus.CounterValue, float64(s.Failovers), sn, ReasonStale)
		ch <- prometheus.MustNewConstMetric(descFailovers, prometheus.CounterValue, float64(s.Failbacks), sn, ReasonFailback)
		for i, o := range s.Owners {
			ch <- prometheus.MustNewConstMetric(descSubnetActive, prometheus.GaugeValue, b(o == s.Active), sn, o)
			ch <- prometheus.MustNewConstMetric(descSubnetFresh, prometheus.GaugeValue, b(s.Fresh[i]), sn, o)
		}
	}
}
