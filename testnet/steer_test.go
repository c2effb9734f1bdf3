package testnet_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/onramp-net/onramp/testnet"
)

// TestSteeringClients: 16 stock wireguard-go clients (bench/cmd/wgload,
// in memory in the client namespace, one socket and session each) send
// 2,000 packets a second each through an edge with two receive loops and its steering program. The
// edge spreads them 8 and 8 over its loops (read back from `edge l3
// client list`), and the loops' sockets share their datagrams within 15%.
// Then one client moves to a new source port, as behind a NAT that
// rebinds: the edge follows it to the new port, keeps it on its loop, and
// every datagram it sends from there lands on that loop's socket.
func TestSteeringClients(t *testing.T) {
	if err := testnet.WGQuickAvailable(); err != nil {
		testnet.SkipOrFail(t, "L3 end to end: %v", err)
	}
	const clients, rebind = 16, 200
	n := testnet.New(t, testnet.L3())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	w, err := testnet.StartL3WorldYAML(ctx, n, dir, func(data string) string {
		return testnet.L3EdgeYAML(data, "") + "  loops: 2\n"
	})
	if err != nil {
		t.Fatal(err)
	}
	client := n.Node("client")
	site := filepath.Join(dir, "site.yml")
	if _, err := w.AddConnector(ctx, client, "site", site, "198.18.130.0/24"); err != nil {
		t.Fatal(err)
	}
	confs := filepath.Join(dir, "clients")
	if err := os.Mkdir(confs, 0o700); err != nil {
		t.Fatal(err)
	}
	for i := range clients {
		conf, err := w.EdgeCLI(ctx, "l3", "client", "add", fmt.Sprintf("c%02d", i))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(confs, fmt.Sprintf("c%02d.conf", i)), []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	bin, err := testnet.BuildBinary("github.com/onramp-net/onramp/bench/cmd/wgload")
	if err != nil {
		t.Fatal(err)
	}
	metrics := func() string {
		t.Helper()
		m, err := w.EdgeMetrics()
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	const steered = "onramp_edge_l3_steered_datagrams_total"
	perLoop := func(m string) [3]float64 {
		var out [3]float64
		for l := 1; l <= 2; l++ {
			out[l] = testnet.MetricValue(m, steered, `family="ipv4"`, fmt.Sprintf(`socket="loop%d"`, l))
		}
		out[0] = testnet.MetricValue(m, steered, `family="ipv4"`, `socket="handshake"`)
		return out
	}
	list := func() map[string]map[string]string {
		t.Helper()
		out, err := w.EdgeCLI(ctx, "l3", "client", "list")
		if err != nil {
			t.Fatal(err)
		}
		rows := map[string]map[string]string{}
		for i := range clients {
			name := fmt.Sprintf("c%02d", i)
			if rows[name] = listed(out, name); rows[name]["LOOP"] == "" {
				t.Fatalf("edge l3 client list has no row for %s:\n%s", name, out)
			}
		}
		return rows
	}

	m0 := metrics()
	cmd := client.Command(ctx, bin, "-clients", confs, "-sink", site, "-dst", "198.18.130.2:9", "-d", "2s", "-rate", "2000", "-rebind", strconv.Itoa(rebind))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	out := bufio.NewScanner(stdout)
	if !out.Scan() {
		cmd.Wait()
		t.Fatalf("wgload printed nothing: %v", out.Err())
	}
	t.Logf("wgload: %s", out.Text())

	// The spread: 8 clients on each loop, the datagrams half and half.
	m1 := metrics()
	rows := list()
	on := map[string]int{}
	for _, r := range rows {
		on[r["LOOP"]]++
	}
	if on["1"] != clients/2 || on["2"] != clients/2 {
		t.Errorf("clients per loop %v, want %d on each", on, clients/2)
	}
	before, after := perLoop(m0), perLoop(m1)
	d1, d2 := after[1]-before[1], after[2]-before[2]
	t.Logf("datagrams under load: loop1 %.0f, loop2 %.0f, handshake socket %.0f", d1, d2, after[0]-before[0])
	if share := d1 / (d1 + d2); math.Abs(share-0.5) > 0.5*0.15 {
		t.Errorf("loop 1 got %.0f of %.0f datagrams (%.2f), want half within 15%%", d1, d1+d2, share)
	}

	// The rebind: c00 moves to a new port and sends rebind datagrams.
	c00 := rows["c00"]
	ep, err := netip.ParseAddrPort(c00["ENDPOINT"])
	if err != nil {
		t.Fatalf("c00's endpoint %q: %v", c00["ENDPOINT"], err)
	}
	if _, err := fmt.Fprintln(stdin, "go"); err != nil {
		t.Fatal(err)
	}
	if !out.Scan() {
		cmd.Wait()
		t.Fatalf("wgload printed nothing after the rebind: %v", out.Err())
	}
	var rb struct {
		Client   string
		From, To int
		Sent     int
	}
	if err := json.Unmarshal(out.Bytes(), &rb); err != nil {
		t.Fatalf("wgload: %v: %s", err, out.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("wgload: %v", err)
	}
	if rb.Client != "c00" || rb.From != int(ep.Port()) {
		t.Fatalf("wgload moved %s from port %d; the edge had c00 at %v", rb.Client, rb.From, ep)
	}
	m2 := metrics()
	again := list()["c00"]
	if again["ENDPOINT"] != netip.AddrPortFrom(ep.Addr(), uint16(rb.To)).String() || again["LOOP"] != c00["LOOP"] {
		t.Fatalf("after the rebind to port %d the edge has c00 at %s on loop %s; before at %s on loop %s", rb.To, again["ENDPOINT"], again["LOOP"], ep, c00["LOOP"])
	}
	mine, _ := strconv.Atoi(c00["LOOP"])
	after2 := perLoop(m2)
	got, other := after2[mine]-after[mine], after2[3-mine]-after[3-mine]
	t.Logf("after c00's rebind from port %d to %d: %.0f datagrams on its loop %d, %.0f on the other", rb.From, rb.To, got, mine, other)
	if got < rebind || other >= rebind/4 {
		t.Errorf("c00 sent %d datagrams from its new port: its loop %d got %.0f, the other %.0f", rebind, mine, got, other)
	}
}
