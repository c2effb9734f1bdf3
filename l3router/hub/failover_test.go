package hub

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onramp-net/onramp/l3router"
	"github.com/onramp-net/onramp/l3router/l3config"
)

// simConn is a connector in the failover simulation: it sends a keepalive
// every keepalive from offset on, which the edge receives while up says
// its link is up.
type simConn struct {
	name      string
	keepalive time.Duration
	offset    time.Duration
	up        func(t time.Duration) bool
}

// simMove is a move the simulation made, at t.
type simMove struct {
	t             time.Duration
	from, to, why string
}

// simulate runs the failover's checks (every cfg.Check) on a fake clock
// for d over one subnet that conns advertise (the first one active at
// the start) and returns the moves.
func simulate(t *testing.T, cfg FailoverConfig, d time.Duration, conns ...simConn) []simMove {
	t.Helper()
	cfg, err := cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	fo := failover{cfg: cfg, up: map[string]time.Time{}, moves: map[moveKey]uint64{}}
	prefix := netip.MustParsePrefix("198.18.30.0/24")
	sp := l3router.SharedPrefix{Prefix: prefix, Active: l3router.PeerID(conns[0].name)}
	last := map[string]time.Duration{}
	for _, c := range conns {
		sp.Owners = append(sp.Owners, l3router.PeerID(c.name))
	}
	epoch := time.Unix(1_000_000, 0)
	const tick = 10 * time.Millisecond // keepalives land on this grid
	var moves []simMove
	for now := time.Duration(0); now <= d; now += tick {
		for _, c := range conns {
			if now >= c.offset && (now-c.offset)%c.keepalive == 0 && c.up(now) {
				last[c.name] = now
			}
		}
		if now%cfg.Check != 0 {
			continue
		}
		fresh := func(o string) bool {
			l, ok := last[o]
			return ok && now-l <= cfg.StaleAfter
		}
		for _, m := range fo.step([]l3router.SharedPrefix{sp}, fresh, epoch.Add(now)) {
			if m.from != string(sp.Active) || m.prefix != prefix {
				t.Fatalf("at %v: move %+v while %s is active", now, m, sp.Active)
			}
			sp.Active = l3router.PeerID(m.to)
			moves = append(moves, simMove{now, m.from, m.to, m.reason})
		}
	}
	return moves
}

func always(time.Duration) bool { return true }

// downFrom is a link that goes down at from and comes back at to (never if
// to is 0).
func downFrom(from, to time.Duration) func(time.Duration) bool {
	return func(t time.Duration) bool { return t < from || to != 0 && t >= to }
}

// flapping is a link that is down for period, up for period, and so on,
// from start on.
func flapping(start, period time.Duration) func(time.Duration) bool {
	return func(t time.Duration) bool { return t < start || ((t-start)/period)%2 == 1 }
}

// TestFailoverRule runs the failover rule on a fake clock: keepalives
// every second, the default bounds (stale after 3 s, failback after 30 s,
// checks every 250 ms).
func TestFailoverRule(t *testing.T) {
	ka := ConnectorKeepalive
	cfg := FailoverConfig{}
	d := withDefaultsT(t, cfg)
	a := func(up func(time.Duration) bool) simConn { return simConn{name: "site-a", keepalive: ka, up: up} }
	b := func(up func(time.Duration) bool) simConn {
		return simConn{name: "site-b", keepalive: ka, offset: 370 * time.Millisecond, up: up}
	}

	t.Run("Steady", func(t *testing.T) {
		if m := simulate(t, cfg, time.Minute, a(always), b(always)); len(m) != 0 {
			t.Fatalf("moves with both up: %+v", m)
		}
	})
	t.Run("Failover", func(t *testing.T) {
		// The link fails at each point of a keepalive period: the move
		// comes within StaleAfter plus a check of the last keepalive.
		worst := time.Duration(0)
		for off := time.Duration(0); off < ka; off += 50 * time.Millisecond {
			fail := 10*time.Second + off
			m := simulate(t, cfg, 30*time.Second, a(downFrom(fail, 0)), b(always))
			if len(m) != 1 || m[0].to != "site-b" || m[0].why != ReasonStale {
				t.Fatalf("link down at %v: moves %+v, want one to site-b", fail, m)
			}
			gap := m[0].t - fail
			worst = max(worst, gap)
			if gap > d.StaleAfter+d.Check {
				t.Fatalf("link down at %v: moved %v later, want at most %v", fail, gap, d.StaleAfter+d.Check)
			}
		}
		t.Logf("failover at most %v after the link went down (stale after %v, keepalive %v, check %v)", worst, d.StaleAfter, ka, d.Check)
	})
	t.Run("Failback", func(t *testing.T) {
		m := simulate(t, cfg, 90*time.Second, a(downFrom(10*time.Second, 20*time.Second)), b(always))
		if len(m) != 2 || m[0].to != "site-b" || m[1].to != "site-a" || m[1].why != ReasonFailback {
			t.Fatalf("moves %+v, want to site-b and back", m)
		}
		if back := m[1].t - 20*time.Second; back < d.FailbackAfter || back > d.FailbackAfter+ka+d.Check {
			t.Fatalf("failback %v after the link came back, want %v to %v", back, d.FailbackAfter, d.FailbackAfter+ka+d.Check)
		}
		t.Logf("moves: %+v", m)
	})
	t.Run("Sticky", func(t *testing.T) {
		m := simulate(t, FailoverConfig{FailbackAfter: -1}, 90*time.Second, a(downFrom(10*time.Second, 20*time.Second)), b(always))
		if len(m) != 1 || m[0].to != "site-b" {
			t.Fatalf("moves %+v, want one to site-b and no failback", m)
		}
	})
	t.Run("Flapping", func(t *testing.T) {
		// The active connector's link flaps every 5 s for a minute: the
		// subnet moves away once and does not come back while it flaps
		// (its up periods are shorter than the failback bound); once it
		// is steady, it comes back once.
		for _, period := range []time.Duration{time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 20 * time.Second} {
			m := simulate(t, cfg, time.Minute, a(flapping(5*time.Second, period)), b(always))
			if period <= 2*time.Second {
				// Down for less than StaleAfter: no move at all,
				// unless a period straddles the keepalives badly.
				if len(m) > 1 {
					t.Fatalf("flapping every %v: moves %+v", period, m)
				}
			} else if len(m) != 1 || m[0].to != "site-b" {
				t.Fatalf("flapping every %v: moves %+v, want one to site-b", period, m)
			}
			t.Logf("flapping every %v for a minute: %d moves", period, len(m))
		}
		m := simulate(t, cfg, 2*time.Minute, a(func(t time.Duration) bool {
			return t >= time.Minute || flapping(5*time.Second, 5*time.Second)(t)
		}), b(always))
		if len(m) != 2 || m[1].to != "site-a" || m[1].t < time.Minute+d.FailbackAfter {
			t.Fatalf("flapping, then steady: moves %+v, want away and back once after %v", m, time.Minute+d.FailbackAfter)
		}
	})
	t.Run("BothFlapping", func(t *testing.T) {
		// Each connector down 5 s of every 10, in turn: the subnet
		// follows the one that is up, moving only to a connector whose
		// link is up, and at most once per outage.
		aUp := flapping(0, 5*time.Second)
		bUp := func(t time.Duration) bool { return !aUp(t) }
		m := simulate(t, cfg, time.Minute, a(aUp), b(bUp))
		for _, mv := range m {
			up := aUp
			if mv.to == "site-b" {
				up = bUp
			}
			if !up(mv.t) {
				t.Fatalf("moved to %s at %v while its link is down: %+v", mv.to, mv.t, m)
			}
		}
		if len(m) > 12 {
			t.Fatalf("%d moves in a minute of 12 outages: %+v", len(m), m)
		}
		t.Logf("%d moves for 12 outages in turn", len(m))
	})
	t.Run("NoCandidate", func(t *testing.T) {
		// Both down: the subnet stays; the standby that comes back
		// first gets it once it has been up for StaleAfter.
		m := simulate(t, cfg, time.Minute, a(downFrom(10*time.Second, 0)), b(downFrom(5*time.Second, 30*time.Second)))
		if len(m) != 1 || m[0].to != "site-b" || m[0].t < 30*time.Second+d.StaleAfter {
			t.Fatalf("moves %+v, want one to site-b %v after it came back", m, d.StaleAfter)
		}
		// A connector whose keepalives come every 25 s (an l3.yml of
		// an older edge) is fresh for 3 s after each: never up for
		// StaleAfter, so no candidate.
		old := b(always)
		old.keepalive = 25 * time.Second
		if m := simulate(t, cfg, time.Minute, a(downFrom(10*time.Second, 0)), old); len(m) != 0 {
			t.Fatalf("moved to a connector with 25 s keepalives: %+v", m)
		}
	})
	t.Run("Preference", func(t *testing.T) {
		// Three owners: the first in name order that is up takes over,
		// and failback goes to the most preferred one.
		c := simConn{name: "site-c", keepalive: ka, offset: 730 * time.Millisecond, up: always}
		m := simulate(t, cfg, 90*time.Second, a(downFrom(10*time.Second, 20*time.Second)), c, b(always))
		if len(m) != 2 || m[0].to != "site-b" || m[1].to != "site-a" {
			t.Fatalf("moves %+v, want to site-b, then back to site-a", m)
		}
	})
}

func withDefaultsT(t *testing.T, c FailoverConfig) FailoverConfig {
	t.Helper()
	c, err := c.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFailoverConfig(t *testing.T) {
	for _, c := range []FailoverConfig{
		{StaleAfter: -time.Second},
		{Check: 5 * time.Second},
		{StaleAfter: 3 * time.Second, FailbackAfter: time.Second},
	} {
		if _, err := c.withDefaults(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

// logBuffer is a slog handler's output, safe for concurrent use.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestHubFailover: a hub with two connectors for one subnet (wireguard-go
// devices with a persistent keepalive of 1 s) and a client. The client's
// packets go to the first connector; either connector's replies reach the
// client; when the first one goes down (its device stops), the hub moves
// the subnet to the second within the stale bound; back up, the first
// gets it back after the failback bound. The moves are logged and counted
// in the metrics.
func TestHubFailover(t *testing.T) {
	s, _ := openTestStore(t, testPools)
	edgeKey, err := s.EdgeKey()
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]l3config.Key{}
	for _, p := range []Peer{
		{Name: "alice", Kind: l3router.KindClient},
		connector(t, "site-a", "198.18.30.0/24"),
		connector(t, "site-b", "198.18.30.0/24"),
	} {
		k := newKey(t)
		p.PublicKey = k.PublicKey()
		keys[p.Name] = k
		mustAdd(t, s, p)
	}
	peers, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	fcfg := FailoverConfig{StaleAfter: 2 * time.Second, FailbackAfter: 3 * time.Second, Check: 50 * time.Millisecond}
	h, err := New(Config{PrivateKey: edgeKey, Pools: testPools, Logger: slog.New(slog.NewTextHandler(&logs, nil)), Failover: fcfg}, peers)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	nodes := map[string]*node{}
	for _, p := range peers {
		n := newNode(t, h, keys[p.Name], p, append(testPools.Prefixes(), Subnets(peers, p.Name)...))
		if err := n.dev.IpcSet("public_key=" + h.PublicKey().Hex() + "\npersistent_keepalive_interval=1\n"); err != nil {
			t.Fatal(err)
		}
		nodes[p.Name] = n
	}
	alice, ca, cb := nodes["alice"], nodes["site-a"], nodes["site-b"]
	lanHost := netip.MustParseAddr("198.18.30.7")
	src := alice.peer.Address4
	shared := func() SharedSubnet {
		t.Helper()
		sh := h.Shared()
		if len(sh) != 1 {
			t.Fatalf("Shared = %+v, want one subnet", sh)
		}
		return sh[0]
	}
	// Both connectors up for the stale bound: candidates.
	if err := waitUntil(20*time.Second, func() bool { sh := shared(); return sh.Fresh[0] && sh.Fresh[1] }); err != nil {
		t.Fatalf("connectors not fresh: %+v", shared())
	}
	time.Sleep(fcfg.StaleAfter)
	if sh := shared(); sh.Active != "site-a" || sh.Owners[0] != "site-a" {
		t.Fatalf("Shared = %+v, want site-a active", sh)
	}
	alice.send(t, udpPacket(t, src, lanHost, "to a"))
	ca.expect(t, "to a", isUDP(src, lanHost, "to a"))
	// The LAN may answer through either connector.
	for _, c := range []*node{ca, cb} {
		tag := "reply via " + c.name
		c.send(t, udpPacket(t, lanHost, src, tag))
		alice.expect(t, tag, isUDP(lanHost, src, tag))
	}

	// pingUntil sends a packet from alice every 20 ms until one arrives
	// at want and returns how long that took.
	pingUntil := func(want *node, what string, limit time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for i := 0; ; i++ {
			tag := fmt.Sprintf("%s %d", what, i)
			alice.send(t, udpPacket(t, src, lanHost, tag))
			select {
			case p := <-want.ct.Inbound:
				if bytes.Contains(p, []byte(what)) {
					return time.Since(start)
				}
			case <-time.After(20 * time.Millisecond):
			}
			if time.Since(start) > limit {
				t.Fatalf("%s: nothing at %s after %v; shared %+v\n%s", what, want.name, limit, shared(), logs.String())
			}
		}
	}
	ca.dev.Down()
	gap := pingUntil(cb, "failover", fcfg.StaleAfter+2*time.Second)
	t.Logf("failover gap %v (stale after %v, keepalive 1 s)", gap, fcfg.StaleAfter)
	if sh := shared(); sh.Active != "site-b" || sh.Failovers != 1 || sh.Fresh[0] {
		t.Fatalf("after failover: %+v", sh)
	}
	if !strings.Contains(logs.String(), "198.18.30.0/24 moved from connector site-a to site-b: site-a is stale") {
		t.Errorf("failover not logged:\n%s", logs.String())
	}
	if err := ca.dev.Up(); err != nil {
		t.Fatal(err)
	}
	for len(ca.ct.Inbound) > 0 { // what reached it before it went down
		<-ca.ct.Inbound
	}
	back := pingUntil(ca, "failback", fcfg.FailbackAfter+5*time.Second)
	t.Logf("failback %v after the connector came back (failback after %v)", back, fcfg.FailbackAfter)
	if back < fcfg.FailbackAfter {
		t.Fatalf("failback after %v, before the failback bound %v", back, fcfg.FailbackAfter)
	}
	if sh := shared(); sh.Active != "site-a" || sh.Failovers != 1 || sh.Failbacks != 1 {
		t.Fatalf("after failback: %+v", sh)
	}
	if !strings.Contains(logs.String(), "moved back from connector site-b to site-a") {
		t.Errorf("failback not logged:\n%s", logs.String())
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(h.Collector())
	for _, m := range []struct {
		name   string
		labels []string
		want   float64
	}{
		// Label values in the order of the label names.
		{"onramp_edge_l3_failovers_total", []string{"stale", "198.18.30.0/24"}, 1},
		{"onramp_edge_l3_failovers_total", []string{"failback", "198.18.30.0/24"}, 1},
		{"onramp_edge_l3_subnet_active", []string{"site-a", "198.18.30.0/24"}, 1},
		{"onramp_edge_l3_subnet_active", []string{"site-b", "198.18.30.0/24"}, 0},
		{"onramp_edge_l3_subnet_connector_fresh", []string{"site-b", "198.18.30.0/24"}, 1},
	} {
		if v := gathered(t, reg, m.name, m.labels...); v != m.want {
			t.Errorf("%s%v = %v, want %v", m.name, m.labels, v, m.want)
		}
	}
	// The standby removed: the subnet is no longer shared.
	if _, err := h.RemovePeer("site-b"); err != nil {
		t.Fatal(err)
	}
	if sh := h.Shared(); len(sh) != 0 {
		t.Fatalf("Shared after the standby's removal: %+v", sh)
	}
	alice.send(t, udpPacket(t, src, lanHost, "alone"))
	ca.expect(t, "alone", isUDP(src, lanHost, "alone"))
}

func waitUntil(d time.Duration, f func() bool) error {
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}
