package testnet_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/onramp-net/onramp/testnet"
)

// etcdClient returns a client of c from node, closed when t ends.
func etcdClient(t *testing.T, c *testnet.EtcdCluster, from *testnet.Node, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := c.Client(from, endpoints...)
	if err != nil {
		t.Fatalf("etcd client from %s: %v", from.Name, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func etcdPut(cli *clientv3.Client, timeout time.Duration, key, val string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := cli.Put(ctx, key, val)
	return err
}

func etcdGet(cli *clientv3.Client, timeout time.Duration, key string, opts ...clientv3.OpOption) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := cli.Get(ctx, key, opts...)
	if err != nil {
		return "", err
	}
	if len(resp.Kvs) == 0 {
		return "", fmt.Errorf("%s: not found", key)
	}
	return string(resp.Kvs[0].Value), nil
}

// putUntil retries a put of key every 20ms (each try bounded by 1s) until
// one succeeds and returns how long that took from start.
func putUntil(t *testing.T, cli *clientv3.Client, start time.Time, limit time.Duration, key, val string) time.Duration {
	t.Helper()
	var err error
	for time.Since(start) < limit {
		if err = etcdPut(cli, time.Second, key, val); err == nil {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("put %s: no success within %v: %v", key, limit, err)
	return 0
}

// waitValue polls member i alone (a serializable read: what the member
// itself holds) until key has val, and returns how long that took.
func waitValue(t *testing.T, c *testnet.EtcdCluster, from *testnet.Node, i int, key, val string, limit time.Duration) time.Duration {
	t.Helper()
	cli := etcdClient(t, c, from, c.Member(i).ClientURL())
	start := time.Now()
	var got string
	var err error
	for time.Since(start) < limit {
		got, err = etcdGet(cli, time.Second, key, clientv3.WithSerializable())
		if err == nil && got == val {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("member %s: %s = %q, %v after %v; want %q", c.Member(i).Name, key, got, err, limit, val)
	return 0
}

func TestEtcdCluster(t *testing.T) {
	n := testnet.New(t, testnet.MultiEdge())
	c := testnet.NewEtcd(t, n, testnet.MultiEdgeEtcd...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	for i, m := range c.Members {
		if !testnet.Allowed(m.Addr) || m.Addr.Is6() {
			t.Fatalf("member %d %s: address %v", i, m.Name, m.Addr)
		}
		st, err := c.Status(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("member %s %s: etcd %s id %x leader %x term %d", m.Name, m.ClientURL(), st.Version, st.ID, st.Leader, st.RaftTerm)
	}

	// Both edges write and read through every endpoint, each alone.
	edge, edge2 := n.Node("edge"), n.Node("edge2")
	all := etcdClient(t, c, edge)
	if err := etcdPut(all, 5*time.Second, "k/start", "v0"); err != nil {
		t.Fatalf("put through %v: %v", c.Endpoints(), err)
	}
	for i, ep := range c.Endpoints() {
		for _, from := range []*testnet.Node{edge, edge2} {
			one := etcdClient(t, c, from, ep)
			key := fmt.Sprintf("k/%s/%d", from.Name, i)
			if err := etcdPut(one, 5*time.Second, key, ep); err != nil {
				t.Fatalf("put from %s to %s: %v", from.Name, ep, err)
			}
			for _, k := range []string{"k/start", key} {
				if _, err := etcdGet(one, 5*time.Second, k); err != nil {
					t.Fatalf("get %s from %s at %s: %v", k, from.Name, ep, err)
				}
			}
		}
	}
	// Only the edges (and the backbone) reach the members.
	for _, name := range []string{"user", "conn", "conn2", "origin"} {
		dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := n.Node(name).DialContext(dctx, "tcp", netip.AddrPortFrom(c.Member(0).Addr, testnet.EtcdClientPort).String())
		dcancel()
		if err == nil {
			conn.Close()
			t.Errorf("%s reaches etcd member %s", name, c.Member(0).Name)
		}
	}

	// Kill the leader: a new one, and writes go on.
	first, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := c.Kill(first); err != nil {
		t.Fatal(err)
	}
	second, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	elected := time.Since(killed)
	wrote := putUntil(t, all, killed, 20*time.Second, "k/one-down", "v1")
	t.Logf("kill -9 leader %s: %s leads after %v; first write through all endpoints after %v",
		c.Member(first).Name, c.Member(second).Name, elected.Round(time.Millisecond), wrote.Round(time.Millisecond))
	var last int // the member that stays
	for i := range c.Members {
		if i != first && i != second {
			last = i
		}
	}
	// Every live member serves reads, linearizable ones too.
	for _, i := range []int{second, last} {
		one := etcdClient(t, c, edge2, c.Member(i).ClientURL())
		if v, err := etcdGet(one, 5*time.Second, "k/one-down"); err != nil || v != "v1" {
			t.Fatalf("member %s after one loss: %q, %v", c.Member(i).Name, v, err)
		}
	}

	// Kill a second member (the new leader): no quorum. With
	// WithRequireLeader a write fails at once with "no leader" once the
	// last member noticed it is alone; without, it fails at its deadline.
	killed = time.Now()
	if err := c.Kill(second); err != nil {
		t.Fatal(err)
	}
	lone := etcdClient(t, c, edge, c.Member(last).ClientURL())
	var tries int
	for {
		tries++
		rctx, rcancel := context.WithTimeout(clientv3.WithRequireLeader(context.Background()), 300*time.Millisecond)
		start := time.Now()
		_, err := lone.Put(rctx, "k/no-quorum", "lost")
		rcancel()
		if errors.Is(err, rpctypes.ErrNoLeader) {
			t.Logf("no quorum: WithRequireLeader writes fail with %q in %v, from %v after the kill (try %d)",
				err, time.Since(start).Round(time.Millisecond), time.Since(killed).Round(time.Millisecond), tries)
			break
		}
		if err == nil {
			t.Fatal("a write with WithRequireLeader succeeded with one member of three")
		}
		if time.Since(killed) > 10*time.Second {
			t.Fatalf("no quorum: WithRequireLeader writes still fail with %v, not %v", err, rpctypes.ErrNoLeader)
		}
	}
	start := time.Now()
	err = etcdPut(all, 2*time.Second, "k/no-quorum", "lost")
	took := time.Since(start)
	if err == nil {
		t.Fatal("a write succeeded with one member of three")
	}
	if took > 4*time.Second {
		t.Errorf("a write without quorum took %v to fail, want about its 2s deadline", took)
	}
	t.Logf("no quorum: a write with a 2s deadline (no WithRequireLeader) failed after %v: %v", took.Round(time.Millisecond), err)
	if _, err := etcdGet(lone, 2*time.Second, "k/one-down"); err == nil {
		t.Error("a linearizable read succeeded without quorum")
	}
	if v, err := etcdGet(lone, 2*time.Second, "k/one-down", clientv3.WithSerializable()); err != nil || v != "v1" {
		t.Errorf("a serializable read from the live member without quorum: %q, %v; want v1", v, err)
	}
	if _, err := c.Leader(ctx); err == nil {
		t.Error("a leader without quorum")
	}

	// Both come back on their data: writes again, and both catch up with
	// what they missed.
	restarted := time.Now()
	for _, i := range []int{first, second} {
		if err := c.Start(i); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	healthy := time.Since(restarted)
	wrote = putUntil(t, all, restarted, 20*time.Second, "k/back", "v2")
	t.Logf("restart both: all healthy after %v, first write after %v", healthy.Round(time.Millisecond), wrote.Round(time.Millisecond))
	for i := range c.Members {
		d := waitValue(t, c, edge2, i, "k/back", "v2", 10*time.Second)
		waitValue(t, c, edge2, i, "k/one-down", "v1", time.Second)
		t.Logf("member %s holds every write %v after the last one", c.Member(i).Name, d.Round(time.Millisecond))
	}
	if got, err := etcdGet(all, 5*time.Second, "k/no-quorum"); err == nil {
		t.Errorf("the write refused without quorum is there: %q", got)
	}
}

// TestEtcdIPv6 runs the cluster on the members' IPv6 addresses.
func TestEtcdIPv6(t *testing.T) {
	if err := testnet.EtcdAvailable(); err != nil {
		testnet.SkipOrFail(t, "%v", err)
	}
	n := testnet.New(t, testnet.MultiEdge())
	var nodes []*testnet.Node
	for _, name := range testnet.MultiEdgeEtcd {
		nodes = append(nodes, n.Node(name))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := testnet.StartEtcdWith(ctx, n, nodes, testnet.EtcdOptions{Dir: t.TempDir(), IPv6: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	for _, m := range c.Members {
		if !m.Addr.Is6() || !testnet.Allowed(m.Addr) {
			t.Fatalf("member %s at %v", m.Name, m.Addr)
		}
	}
	cli := etcdClient(t, c, n.Node("edge2"))
	if err := etcdPut(cli, 5*time.Second, "k6", "v6"); err != nil {
		t.Fatalf("put through %v: %v", c.Endpoints(), err)
	}
	if v, err := etcdGet(etcdClient(t, c, n.Node("edge"), c.Endpoints()[2]), 5*time.Second, "k6"); err != nil || v != "v6" {
		t.Fatalf("get at %s: %q, %v", c.Endpoints()[2], v, err)
	}
}

// writer puts a key every 50ms (each put bounded by 1s) until stopped, and
// keeps count of failures and the longest time without a success. A put
// counts in the phase it started in: one begun before a reset (against a
// member frozen then, say) and ending after it is not the new phase's.
type writer struct {
	cli  *clientv3.Client
	stop chan struct{}
	done chan struct{}

	mu       sync.Mutex
	since    time.Time // the last reset
	ok, fail int
	lastOK   time.Time
	worstGap time.Duration
	lastErr  error
}

func startWriter(cli *clientv3.Client) *writer {
	w := &writer{cli: cli, stop: make(chan struct{}), done: make(chan struct{}), lastOK: time.Now()}
	go func() {
		defer close(w.done)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			start := time.Now()
			err := etcdPut(cli, time.Second, "k/writer", fmt.Sprint(i))
			now := time.Now()
			w.mu.Lock()
			switch {
			case start.Before(w.since):
				// begun in the phase before the last reset
			case err != nil:
				w.fail++
				w.lastErr = err
			default:
				w.ok++
				w.worstGap = max(w.worstGap, now.Sub(w.lastOK))
				w.lastOK = now
			}
			w.mu.Unlock()
		}
	}()
	return w
}

// reset starts a new count.
func (w *writer) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.since = time.Now()
	w.ok, w.fail, w.worstGap, w.lastErr, w.lastOK = 0, 0, 0, nil, w.since
}

func (w *writer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return fmt.Sprintf("%d writes ok, %d failed (last: %v), longest gap between successes %v", w.ok, w.fail, w.lastErr, w.worstGap.Round(time.Millisecond))
}

func (w *writer) close() {
	close(w.stop)
	<-w.done
}

// memberFault takes one member away (down) and brings it back (up).
type memberFault struct {
	name     string
	leader   bool // the leader's turn, else a follower's
	down, up func(ctx context.Context, c *testnet.EtcdCluster, i int) error
}

// TestEtcdLinkDown takes one member's link down and up again, the leader's
// and then a follower's, while an edge writes all the time through every
// endpoint: the cluster goes on, and the member catches up. With the link
// down the routers answer "network unreachable", so clients fail fast.
func TestEtcdLinkDown(t *testing.T) {
	link := func(up bool) func(ctx context.Context, c *testnet.EtcdCluster, i int) error {
		return func(ctx context.Context, c *testnet.EtcdCluster, i int) error { return c.Link(i).SetUp(ctx, up) }
	}
	testMemberFaults(t, []memberFault{
		{"link down", true, link(false), link(true)},
		{"link down", false, link(false), link(true)},
	})
}

// TestEtcdSilentLoss is TestEtcdLinkDown with faults that give clients no
// error, only silence: the leader's node drops every packet (nftables),
// then a follower freezes (SIGSTOP). Clients find out by their keepalive.
func TestEtcdSilentLoss(t *testing.T) {
	testMemberFaults(t, []memberFault{
		{"isolated", true,
			func(ctx context.Context, c *testnet.EtcdCluster, i int) error { return c.Isolate(ctx, i, true) },
			func(ctx context.Context, c *testnet.EtcdCluster, i int) error { return c.Isolate(ctx, i, false) }},
		{"frozen", false,
			func(_ context.Context, c *testnet.EtcdCluster, i int) error { return c.Pause(i) },
			func(_ context.Context, c *testnet.EtcdCluster, i int) error { return c.Resume(i) }},
	})
}

func testMemberFaults(t *testing.T, faults []memberFault) {
	n := testnet.New(t, testnet.MultiEdge())
	c := testnet.NewEtcd(t, n, testnet.MultiEdgeEtcd...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	edge := n.Node("edge")
	all := etcdClient(t, c, edge)
	if err := etcdPut(all, 5*time.Second, "k/start", "v0"); err != nil {
		t.Fatal(err)
	}
	w := startWriter(all)
	defer w.close()

	for round, f := range faults {
		lead, err := c.WaitLeader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		i, role := lead, "leader"
		if !f.leader {
			i, role = (lead+1)%len(c.Members), "follower"
		}
		m := c.Member(i)
		time.Sleep(500 * time.Millisecond)
		w.reset()
		down := time.Now()
		if err := f.down(ctx, c, i); err != nil {
			t.Fatal(err)
		}
		key, val := fmt.Sprintf("k/down/%d", round), m.Name
		wrote := putUntil(t, all, down, 20*time.Second, key, val)
		// A new leader among the others (the old one, cut off, steps
		// down after an election timeout: CheckQuorum).
		newLead := -1
		for time.Since(down) < 10*time.Second {
			if l, err := c.Leader(ctx); err == nil && l != i {
				newLead = l
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if newLead < 0 {
			t.Fatalf("%s %s: no leader among the others after 10s", role, m.Name)
		}
		elected := time.Since(down)
		time.Sleep(3 * time.Second)
		t.Logf("%s %s %s: first write after %v, %s leads (seen after %v); in the first 3s+: %v",
			role, m.Name, f.name, wrote.Round(time.Millisecond), c.Member(newLead).Name, elected.Round(time.Millisecond), w)
		stBefore, err := c.Status(ctx, newLead)
		if err != nil {
			t.Fatal(err)
		}

		up := time.Now()
		if err := f.up(ctx, c, i); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitHealthy(ctx); err != nil {
			t.Fatal(err)
		}
		healthy := time.Since(up)
		// The count starts once every member is healthy again: until
		// then the returning member is re-establishing its peer
		// connections, and a put the client's balancer hands to it may
		// time out (CI saw 2 of 56 in one run); after that, none may.
		w.reset()
		caught := waitValue(t, c, edge, i, key, val, 10*time.Second)
		time.Sleep(2 * time.Second)
		stAfter, err := c.Status(ctx, newLead)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s %s back: healthy after %v, holds the writes it missed %v later; since healthy: %v; leader term %d -> %d",
			role, m.Name, healthy.Round(time.Millisecond), caught.Round(time.Millisecond), w, stBefore.RaftTerm, stAfter.RaftTerm)
		// Pre-vote: the member coming back does not depose the leader.
		if stAfter.Leader != stBefore.ID || stAfter.RaftTerm != stBefore.RaftTerm {
			t.Errorf("%s's return changed the leadership: leader %x term %d -> leader %x term %d",
				m.Name, stBefore.ID, stBefore.RaftTerm, stAfter.Leader, stAfter.RaftTerm)
		}
		w.mu.Lock()
		fail := w.fail
		w.mu.Unlock()
		if fail > 0 {
			t.Errorf("%d writes failed after %s was healthy again: %v", fail, m.Name, w)
		}
	}
}

// TestMultiEdgeTopology checks who reaches whom in MultiEdge: users and
// connectors reach both edges' public addresses, only the connectors reach
// the origin, and only the edges reach the etcd members.
func TestMultiEdgeTopology(t *testing.T) {
	n := testnet.New(t, testnet.MultiEdge())
	const port = 9000
	type target struct {
		node, peer string
	}
	targets := map[string]target{
		"edge": {"edge", "inet"}, "edge2": {"edge2", "inet"},
		"origin": {"origin", "lan"}, "etcd1": {"etcd1", "core"}, "etcd3": {"etcd3", "core"},
	}
	for _, tg := range targets {
		for _, v6 := range []bool{false, true} {
			tcpEcho(t, n.Node(tg.node), netip.AddrPortFrom(n.Addr(tg.node, tg.peer, v6), port))
		}
	}
	reach := map[string][]string{
		"user":   {"edge", "edge2"},
		"conn":   {"edge", "edge2", "origin"},
		"conn2":  {"edge", "edge2", "origin"},
		"edge":   {"edge2", "etcd1", "etcd3"},
		"edge2":  {"edge", "etcd1", "etcd3"},
		"origin": {},
		"etcd1":  {"etcd3"}, // the members answer the edges; they do not call them
	}
	// In parallel: a probe that must fail waits out its timeout when no
	// ICMPv6 error comes back (the routers rate-limit them).
	var wg sync.WaitGroup
	for from, ok := range reach {
		for to, tg := range targets {
			if to == from {
				continue
			}
			want := false
			for _, o := range ok {
				want = want || o == to
			}
			for _, v6 := range []bool{false, true} {
				dst := netip.AddrPortFrom(n.Addr(tg.node, tg.peer, v6), port)
				wg.Go(func() {
					err := tcpRoundTrip(n.Node(from), dst, 2*time.Second)
					if want && err != nil {
						t.Errorf("%s cannot reach %s at %v: %v", from, to, dst, err)
					}
					if !want && err == nil {
						t.Errorf("%s reaches %s at %v", from, to, dst)
					}
				})
			}
		}
	}
	wg.Wait()
}
