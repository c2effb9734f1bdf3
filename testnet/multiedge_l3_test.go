package testnet_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onramp-net/onramp/testnet"
)

// TestMultiEdgeL3 runs the L3 on-ramp on two real edges sharing their
// state in a three-member etcd cluster (one hub key, one set of clients
// and connectors), with the supported pattern for stock clients: the
// client's Endpoint is an address that moves between the edges
// (MultiEdgeFloat4 on the edges' loopbacks, routed by inet to one of
// them: anycast).
//
//   - `edge l3 connector add` prints an l3.yml naming both edges; the
//     connector (`connector l3 run` on conn, the origin's LAN behind it)
//     makes a session with each.
//   - alice (wg-quick on user, Endpoint the floating address, on edge A)
//     and bob (wg-quick on conn2, Endpoint edge B's own address) ping the
//     origin at the same time: each through its edge, the connector
//     answering each through the edge its packets came through.
//   - The address moves to edge B (the route), edge A still running: alice's
//     session is unknown to edge B and wg-quick starts a new one after its
//     timers; the gap in alice's pings is measured and printed; bob's pings
//     go on meanwhile.
//   - Edge B is killed and the address moves back to edge A: the gap is
//     measured and printed, and the connector's session with edge B goes
//     stale (its log says so; the time is printed).
func TestMultiEdgeL3(t *testing.T) {
	if err := testnet.EtcdAvailable(); err != nil {
		testnet.SkipOrFail(t, "several edges on etcd: %v", err)
	}
	if err := testnet.WGQuickAvailable(); err != nil {
		testnet.SkipOrFail(t, "L3 on several edges: %v", err)
	}
	if _, err := exec.LookPath("ping"); err != nil {
		testnet.SkipOrFail(t, "L3 on several edges: ping not found (apt-get install iputils-ping)")
	}
	n := testnet.New(t, testnet.MultiEdge())
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	dir := t.TempDir()
	etcd := testnet.NewEtcd(t, n, testnet.MultiEdgeEtcd...)
	if _, err := etcd.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	float := net.JoinHostPort(testnet.MultiEdgeFloat4.String(), fmt.Sprint(testnet.L3EdgePort))
	w, err := testnet.StartMultiEdge(ctx, n, dir, etcd, "", testnet.WithMultiEdgeL3(float))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.MoveFloat(ctx, 0); err != nil {
		t.Fatal(err)
	}
	wgA := net.JoinHostPort(w.Edges[0].Public, fmt.Sprint(testnet.L3EdgePort))
	wgB := net.JoinHostPort(w.Edges[1].Public, fmt.Sprint(testnet.L3EdgePort))

	// The connector, registered on edge A: its l3.yml names both edges.
	conn := n.Node("conn")
	config := filepath.Join(dir, "site.yml")
	if _, err := w.AddL3Connector(ctx, 0, conn, "site", config, "198.18.62.0/24", "fd00:62::/64"); err != nil {
		t.Fatal(err)
	}
	yml, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`endpoints:\s+- ` + regexp.QuoteMeta(wgA) + `\s+- ` + regexp.QuoteMeta(wgB) + `\n`).Match(yml) {
		t.Fatalf("the connector's l3.yml does not name edge A then edge B:\n%s", yml)
	}
	// The LAN answers the clients through the connector's host.
	lan := n.Node("lan")
	for _, r := range [][2]string{{testnet.L3Pool4.String(), n.Addr("conn", "lan", false).String()},
		{testnet.L3Pool6.String(), n.Addr("conn", "lan", true).String()}} {
		if err := lan.IP(ctx, "route", "add", r[0], "via", r[1]); err != nil {
			t.Fatal(err)
		}
	}
	cp, err := w.StartL3Connector(conn, config)
	if err != nil {
		t.Fatal(err)
	}
	for _, ep := range []string{wgA, wgB} {
		if _, err := testnet.WaitLog(cp, 15*time.Second, "handshake with an edge complete", "edge="+ep); err != nil {
			t.Fatalf("%v\n%s", err, cp.Output())
		}
	}

	// alice's Endpoint is the floating address; bob's, registered on
	// edge B, edge B's own.
	alice, err := w.CLI(ctx, 0, "l3", "client", "add", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(alice, "Endpoint = "+float+"\n") {
		t.Fatalf("alice's config does not name l3.client_endpoint %s:\n%s", float, alice)
	}
	bob, err := w.CLI(ctx, 1, "l3", "client", "add", "bob")
	if err != nil {
		t.Fatal(err)
	}
	bob = strings.Replace(bob, "Endpoint = "+float, "Endpoint = "+wgB, 1)
	user, bobHost := n.Node("user"), n.Node("conn2")
	// conn2's own route into the LAN would collide with bob's.
	for _, p := range []string{"198.18.62.0/24", "fd00:62::/64"} {
		if err := bobHost.IP(ctx, "route", "del", p); err != nil {
			t.Fatal(err)
		}
	}
	id := os.Getpid() % 100000
	if _, err := user.WGQuickUp(ctx, fmt.Sprintf("onma%d", id), []byte(alice)); err != nil {
		t.Fatal(err)
	}
	if _, err := bobHost.WGQuickUp(ctx, fmt.Sprintf("onmb%d", id), []byte(bob)); err != nil {
		t.Fatal(err)
	}
	origin := n.Addr("origin", "lan", false).String()
	pa, err := startPinger(ctx, user, origin)
	if err != nil {
		t.Fatal(err)
	}
	defer pa.stop()
	pb, err := startPinger(ctx, bobHost, origin)
	if err != nil {
		t.Fatal(err)
	}
	defer pb.stop()
	flowing := func(p *pinger, since time.Time, d time.Duration) error {
		return waitFor(d, func() bool { return p.repliesSince(since) >= 5 })
	}
	now := time.Now()
	if err := flowing(pa, now, 15*time.Second); err != nil {
		t.Fatalf("alice's pings through edge A: %v\n%s\nconnector:\n%s", err, pa.output(), cp.Output())
	}
	if err := flowing(pb, now, 15*time.Second); err != nil {
		t.Fatalf("bob's pings through edge B: %v\n%s\nconnector:\n%s", err, pb.output(), cp.Output())
	}
	// Each client's packets go through its own edge only.
	rx := func(edge int, name string) uint64 {
		t.Helper()
		var peers []struct {
			Name     string
			Endpoint string
			RxBytes  uint64 `json:"rx_bytes"`
		}
		if err := w.Admin(ctx, edge, http.MethodGet, "/v1/l3/clients", &peers); err != nil {
			t.Fatal(err)
		}
		for _, p := range peers {
			if p.Name == name {
				return p.RxBytes
			}
		}
		t.Fatalf("edge %d does not list %s: %+v", edge, name, peers)
		return 0
	}
	if rx(0, "alice") == 0 || rx(1, "bob") == 0 || rx(1, "alice") != 0 || rx(0, "bob") != 0 {
		t.Fatalf("received from alice by A %d, by B %d; from bob by A %d, by B %d: want each through its edge only",
			rx(0, "alice"), rx(1, "alice"), rx(0, "bob"), rx(1, "bob"))
	}
	t.Logf("alice through edge A and bob through edge B reach the origin at once")

	// The address moves to edge B; edge A keeps running.
	moved := time.Now()
	if err := w.MoveFloat(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := flowing(pa, moved, 60*time.Second); err != nil {
		t.Fatalf("alice's pings after the move to edge B: %v\n%s", err, pa.output())
	}
	gap, at := pa.maxGap(moved.Add(-time.Second), time.Now())
	t.Logf("address moved to edge B (edge A running): no reply to alice for %v (from %v after the move)",
		gap.Round(time.Millisecond), at.Sub(moved).Round(time.Millisecond))
	if rx(1, "alice") == 0 {
		t.Fatal("edge B received nothing from alice after the move")
	}
	if g, _ := pb.maxGap(moved, time.Now()); g > 2*time.Second {
		t.Errorf("bob's pings through edge B stopped for %v while alice moved", g)
	}
	if gap > 30*time.Second {
		t.Errorf("gap %v: stock WireGuard should start a new session about 15 s after its traffic goes unanswered", gap)
	}
	gap1 := gap

	// Edge B dies and the address moves back to edge A, once alice's
	// pings flow steadily again (the gap is measured from the kill).
	if err := waitFor(10*time.Second, func() bool { return pa.repliesSince(time.Now().Add(-time.Second)) >= 8 }); err != nil {
		t.Fatalf("alice's pings through edge B not steady: %v\n%s", err, pa.output())
	}
	// bob removed on edge A: edge B cuts him within a second.
	removed := time.Now()
	if _, err := w.CLI(ctx, 0, "l3", "client", "remove", "bob"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if n := pb.repliesSince(removed.Add(time.Second)); n > 0 {
		t.Fatalf("bob, removed on edge A, still reached the origin through edge B %d times more than a second later\n%s", n, pb.output())
	}
	t.Logf("bob removed on edge A: no reply through edge B from 1 s after the removal on (%d replies in the second after it)",
		pb.repliesSince(removed)-pb.repliesSince(removed.Add(time.Second)))
	pb.stop()
	killed := time.Now()
	if err := w.Edges[1].Proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := w.MoveFloat(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := flowing(pa, killed, 60*time.Second); err != nil {
		t.Fatalf("alice's pings after edge B died: %v\n%s", err, pa.output())
	}
	gap, at = pa.maxGap(killed, time.Now())
	t.Logf("edge B killed, address back on edge A: no reply to alice for %v (from %v after the kill)",
		gap.Round(time.Millisecond), at.Sub(killed).Round(time.Millisecond))
	if gap > 30*time.Second {
		t.Errorf("gap %v: stock WireGuard should start a new session about 15 s after its traffic goes unanswered", gap)
	}
	line, err := testnet.WaitLog(cp, 30*time.Second, "edge stale", "edge="+wgB)
	if err != nil {
		t.Fatalf("the connector's session with the dead edge B: %v\n%s", err, cp.Output())
	}
	if at := testnet.LogTimes(line, "edge", "edge stale")[wgB]; !at.IsZero() {
		t.Logf("connector: session with the dead edge B stale %v after the kill", at.Sub(killed).Round(100*time.Millisecond))
	}
	t.Logf("gaps: %v moving to a running edge, %v moving away from a dead one", gap1.Round(100*time.Millisecond), gap.Round(100*time.Millisecond))
}
