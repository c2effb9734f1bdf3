package testnet_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onramp-net/onramp/testnet"
)

// Failover bounds of the test's edge: the default stale bound (3 s,
// connectors keeping alive every second), and a failback bound shorter
// than the default 30 s but longer than the flapping link's up periods.
const (
	foStaleAfter    = 3 * time.Second
	foFailbackAfter = 10 * time.Second
	foFlapEvery     = 5 * time.Second
	foFlapFor       = 60 * time.Second
)

// TestL3Failover: two connectors, site-a and site-b, advertise one LAN
// (198.18.150.0/24), each from its own host with its own uplink to the
// edge and a leg on the LAN; a stock WireGuard client (wg-quick) pings the
// LAN host every 100 ms through the edge. The LAN routes the client pool
// through site-b's host (the LAN's own gateway choice: the edge accepts
// replies from either connector of the pair), so the gaps measured are the
// edge's.
//
// site-a (first by name, preferred) is active. Its uplink goes down: the
// edge moves the subnet to site-b once site-a has been silent for the
// stale bound; the loss gap is measured and printed, and must be under
// 5 s. The uplink comes back: after the failback bound the subnet returns
// to site-a; the time and the gap are printed. Then site-a's uplink flaps
// every 5 s for 60 s: the subnet moves away once and not back (the up
// periods are shorter than the failback bound), read from the edge's
// metrics and printed.
func TestL3Failover(t *testing.T) {
	if err := testnet.WGQuickAvailable(); err != nil {
		testnet.SkipOrFail(t, "L3 failover: %v", err)
	}
	if _, err := exec.LookPath("ping"); err != nil {
		testnet.SkipOrFail(t, "L3 failover: ping not found (apt-get install iputils-ping)")
	}
	n := testnet.New(t, testnet.L3Failover())
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	if err := testnet.SetupFailoverLAN(ctx, n, testnet.L3FailoverConnB); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	w, err := testnet.StartL3WorldYAML(ctx, n, dir, func(data string) string {
		return testnet.L3EdgeYAML(data, "") + fmt.Sprintf("  failover: {stale_after: %v, failback_after: %v}\n", foStaleAfter, foFailbackAfter)
	})
	if err != nil {
		t.Fatal(err)
	}
	lan := testnet.L3FailoverLAN.String()
	sites := map[string]*testnet.Node{"site-a": n.Node("conn"), "site-b": n.Node("conn2")}
	for _, name := range []string{"site-a", "site-b"} {
		config := filepath.Join(dir, name+".yml")
		if _, err := w.AddConnector(ctx, sites[name], name, config, lan); err != nil {
			t.Fatal(err)
		}
		if data, err := os.ReadFile(config); err != nil || !strings.Contains(string(data), "keepalive: 1s") {
			t.Fatalf("%s's l3.yml has no keepalive of 1s (%v):\n%s", name, err, data)
		}
		if _, err := w.StartConnector(sites[name], config); err != nil {
			t.Fatal(err)
		}
	}
	conf, err := w.EdgeCLI(ctx, "l3", "client", "add", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Node("client").WGQuickUp(ctx, fmt.Sprintf("onrf%d", os.Getpid()%1000000), []byte(conf)); err != nil {
		t.Fatal(err)
	}

	metric := func(name string, labels ...string) float64 {
		t.Helper()
		m, err := w.EdgeMetrics()
		if err != nil {
			t.Fatal(err)
		}
		return metricValue(m, name, labels...)
	}
	active := func() string {
		t.Helper()
		m, err := w.EdgeMetrics()
		if err != nil {
			t.Fatal(err)
		}
		var on []string
		for _, s := range []string{"site-a", "site-b"} {
			if metricValue(m, "onramp_edge_l3_subnet_active", `connector="`+s+`"`, `subnet="`+lan+`"`) == 1 {
				on = append(on, s)
			}
		}
		return strings.Join(on, ",")
	}
	moves := func() float64 {
		t.Helper()
		return metric("onramp_edge_l3_failovers_total", `reason="stale"`, `subnet="`+lan+`"`) +
			metric("onramp_edge_l3_failovers_total", `reason="failback"`, `subnet="`+lan+`"`)
	}
	waitActive := func(want string, limit time.Duration) time.Time {
		t.Helper()
		if err := waitFor(limit, func() bool { return active() == want }); err != nil {
			m, _ := w.EdgeMetrics()
			t.Fatalf("%s not active %v: active %q\n%s\nedge log:\n%s", want, err, active(), grepLines(m, "onramp_edge_l3_subnet", "onramp_edge_l3_failovers"), w.Edge.Output())
		}
		return time.Now()
	}
	// Both connectors heard from long enough to be candidates.
	if err := waitFor(20*time.Second, func() bool {
		return metric("onramp_edge_l3_subnet_connector_fresh", `connector="site-a"`, `subnet="`+lan+`"`) == 1 &&
			metric("onramp_edge_l3_subnet_connector_fresh", `connector="site-b"`, `subnet="`+lan+`"`) == 1
	}); err != nil {
		t.Fatalf("connectors not fresh: %v", err)
	}
	time.Sleep(foStaleAfter + time.Second)
	waitActive("site-a", time.Second)

	ping, err := startPinger(ctx, n.Node("client"), testnet.L3FailoverHost.String())
	if err != nil {
		t.Fatal(err)
	}
	defer ping.stop()
	if err := waitFor(10*time.Second, func() bool { return ping.repliesSince(time.Now().Add(-time.Second)) >= 5 }); err != nil {
		t.Fatalf("no ping replies through site-a: %v\n%s", err, ping.output())
	}

	uplinkA := n.Link("edge", "conn")
	// Failover.
	down := time.Now()
	if err := uplinkA.SetUp(ctx, false); err != nil {
		t.Fatal(err)
	}
	moved := waitActive("site-b", foStaleAfter+5*time.Second)
	if err := waitFor(5*time.Second, func() bool { return ping.repliesSince(moved) >= 5 }); err != nil {
		t.Fatalf("no ping replies through site-b after the failover: %v\n%s", err, ping.output())
	}
	gap, at := ping.maxGap(down.Add(-time.Second), time.Now())
	t.Logf("failover gap %v: no ping reply from %v to %v after site-a's uplink went down (moved after %v; stale after %v, keepalive 1s)",
		gap.Round(time.Millisecond), at.Sub(down).Round(time.Millisecond), at.Add(gap).Sub(down).Round(time.Millisecond),
		moved.Sub(down).Round(time.Millisecond), foStaleAfter)
	if gap >= 5*time.Second {
		t.Errorf("failover gap %v, want under 5s", gap)
	}
	if !strings.Contains(w.Edge.Output(), "moved from connector site-a to site-b: site-a is stale") {
		t.Errorf("the edge did not log the failover:\n%s", w.Edge.Output())
	}
	list, err := w.EdgeCLI(ctx, "l3", "connector", "list")
	if err != nil {
		t.Fatal(err)
	}
	if a, b := listed(list, "site-a")["SUBNETS"], listed(list, "site-b")["SUBNETS"]; a != lan+"(standby)" || b != lan+"(active)" {
		t.Errorf("edge l3 connector list shows site-a %q, site-b %q; want standby, active:\n%s", a, b, list)
	}

	// Failback, after the failback bound.
	up := time.Now()
	if err := uplinkA.SetUp(ctx, true); err != nil {
		t.Fatal(err)
	}
	back := waitActive("site-a", foFailbackAfter+10*time.Second)
	time.Sleep(2 * time.Second)
	gap, _ = ping.maxGap(back.Add(-time.Second), time.Now())
	t.Logf("failback after %v (failback after %v of site-a up), ping gap around it %v",
		back.Sub(up).Round(time.Millisecond), foFailbackAfter, gap.Round(time.Millisecond))
	if back.Sub(up) < foFailbackAfter {
		t.Errorf("failback %v after the uplink came back, before the failback bound %v", back.Sub(up), foFailbackAfter)
	}
	if gap >= 5*time.Second {
		t.Errorf("failback gap %v, want under 5s", gap)
	}
	if !strings.Contains(w.Edge.Output(), "moved back from connector site-b to site-a") {
		t.Errorf("the edge did not log the failback:\n%s", w.Edge.Output())
	}

	// site-a's uplink flaps every 5 s for 60 s, down first: its down
	// periods (5 s) exceed the stale bound, its up periods are shorter
	// than the failback bound. The rule allows one move: away, and not
	// back while it flaps.
	before := moves()
	start := time.Now()
	for i := 0; time.Since(start) < foFlapFor; i++ {
		if err := uplinkA.SetUp(ctx, i%2 == 1); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(start.Add(time.Duration(i+1) * foFlapEvery)))
	}
	if err := uplinkA.SetUp(ctx, true); err != nil {
		t.Fatal(err)
	}
	flaps := moves() - before
	t.Logf("flapping: site-a's uplink flapped every %v for %v: the subnet moved %v times (rule: at most 1), active %s",
		foFlapEvery, foFlapFor, flaps, active())
	if flaps > 1 {
		t.Errorf("the subnet moved %v times while site-a's uplink flapped, want at most 1", flaps)
	}
	if flaps < 1 || active() != "site-b" {
		t.Errorf("the subnet moved %v times, active %s: want one move to site-b (site-a was down 5 s at a time)", flaps, active())
	}
	if err := waitFor(5*time.Second, func() bool { return ping.repliesSince(time.Now().Add(-time.Second)) >= 5 }); err != nil {
		t.Fatalf("no ping replies after the flapping: %v\n%s", err, ping.output())
	}
	sent, got := ping.counts()
	t.Logf("ping: %d replies, %d sequence numbers sent", got, sent)
}

// pinger runs ping(8) every 100 ms and records the time of each reply
// (ping -D).
type pinger struct {
	cmd  *exec.Cmd
	done chan struct{}

	mu      sync.Mutex
	replies []time.Time
	lastSeq int
	out     []string
}

var pingReply = regexp.MustCompile(`^\[(\d+)\.(\d+)\] \d+ bytes from .*icmp_seq=(\d+)`)

func startPinger(ctx context.Context, node *testnet.Node, dst string) (*pinger, error) {
	cmd := node.Command(ctx, "ping", "-D", "-n", "-i", "0.1", dst)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &pinger{cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			if len(p.out) < 100 {
				p.out = append(p.out, line)
			}
			if m := pingReply.FindStringSubmatch(line); m != nil {
				sec, _ := strconv.ParseInt(m[1], 10, 64)
				usec, _ := strconv.ParseInt((m[2] + "000000")[:6], 10, 64)
				seq, _ := strconv.Atoi(m[3])
				p.replies = append(p.replies, time.Unix(sec, usec*1000))
				p.lastSeq = max(p.lastSeq, seq)
			}
			p.mu.Unlock()
		}
	}()
	return p, nil
}

func (p *pinger) stop() {
	_ = p.cmd.Process.Kill()
	<-p.done
	_ = p.cmd.Wait()
}

// repliesSince counts the replies after t.
func (p *pinger) repliesSince(t time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, r := range p.replies {
		if r.After(t) {
			n++
		}
	}
	return n
}

// maxGap returns the longest time without a reply between from and to
// (the replies before and after it bounding it), and when it began.
func (p *pinger) maxGap(from, to time.Time) (time.Duration, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var gap time.Duration
	var at time.Time
	prev := from
	for _, r := range p.replies {
		if r.Before(from) {
			prev = r
			continue
		}
		if r.After(to) {
			break
		}
		if d := r.Sub(prev); d > gap {
			gap, at = d, prev
		}
		prev = r
	}
	if d := to.Sub(prev); d > gap {
		gap, at = d, prev
	}
	return gap, at
}

// counts returns the highest sequence number seen and the replies.
func (p *pinger) counts() (int, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastSeq, len(p.replies)
}

// output returns the first lines ping printed.
func (p *pinger) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.out, "\n")
}

// metricValue returns the value of the sample of name whose labels
// include each of labels (`key="value"`), 0 if there is none.
func metricValue(text, name string, labels ...string) float64 {
	for _, l := range strings.Split(text, "\n") {
		if !strings.HasPrefix(l, name+"{") && !strings.HasPrefix(l, name+" ") {
			continue
		}
		ok := true
		for _, lb := range labels {
			if !strings.Contains(l, lb) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		f := strings.Fields(l)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			return v
		}
	}
	return 0
}

// grepLines returns the lines of text that contain one of subs.
func grepLines(text string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		for _, s := range subs {
			if strings.Contains(l, s) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
