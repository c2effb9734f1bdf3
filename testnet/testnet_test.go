package testnet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/onramp-net/onramp/testnet"
)

func TestMain(m *testing.M) { testnet.Main(m) }

// tcpEcho listens on addr inside node and echoes every connection until the
// test ends.
func tcpEcho(t *testing.T, node *testnet.Node, addr netip.AddrPort) {
	t.Helper()
	var ln net.Listener
	err := node.Do(func() (err error) {
		ln, err = net.Listen("tcp", addr.String())
		return err
	})
	if err != nil {
		t.Fatalf("listen %s in %s: %v", addr, node.Name, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
}

// udpEcho answers every datagram on addr inside node with the same bytes.
func udpEcho(t *testing.T, node *testnet.Node, addr netip.AddrPort) {
	t.Helper()
	var pc net.PacketConn
	err := node.Do(func() (err error) {
		pc, err = net.ListenPacket("udp", addr.String())
		return err
	})
	if err != nil {
		t.Fatalf("listen udp %s in %s: %v", addr, node.Name, err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
}

// tcpRoundTrip dials addr from node, sends a message, and expects it back.
func tcpRoundTrip(node *testnet.Node, addr netip.AddrPort, timeout time.Duration) error {
	var c net.Conn
	err := node.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", addr.String(), timeout)
		return err
	})
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	msg := []byte("hello across the router " + addr.String())
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo returned %q, want %q", got, msg)
	}
	return nil
}

func udpRoundTrip(node *testnet.Node, addr netip.AddrPort, timeout time.Duration) error {
	var c net.Conn
	err := node.Do(func() (err error) {
		c, err = net.Dial("udp", addr.String())
		return err
	})
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	msg := []byte("datagram to " + addr.String())
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, 2048)
	n, err := c.Read(got)
	if err != nil {
		return err
	}
	if !bytes.Equal(got[:n], msg) {
		return fmt.Errorf("udp echo returned %q, want %q", got[:n], msg)
	}
	return nil
}

func families(t *testing.T, f func(t *testing.T, v6 bool)) {
	for _, v6 := range []bool{false, true} {
		name := "IPv4"
		if v6 {
			name = "IPv6"
		}
		t.Run(name, func(t *testing.T) { f(t, v6) })
	}
}

func TestTCPEchoAcrossRouter(t *testing.T) {
	n := testnet.New(t, testnet.ClientRouterServer())
	families(t, func(t *testing.T, v6 bool) {
		srv := netip.AddrPortFrom(n.Addr("server", "router", v6), 7007)
		tcpEcho(t, n.Node("server"), srv)
		if err := tcpRoundTrip(n.Node("client"), srv, 5*time.Second); err != nil {
			t.Fatalf("client -> router -> server: %v", err)
		}
	})
}

func TestLinkDownBreaksAndUpRestores(t *testing.T) {
	ctx := context.Background()
	n := testnet.New(t, testnet.ClientRouterServer())
	link := n.Link("router", "server")
	families(t, func(t *testing.T, v6 bool) {
		srv := netip.AddrPortFrom(n.Addr("server", "router", v6), 7008)
		tcpEcho(t, n.Node("server"), srv)
		if err := tcpRoundTrip(n.Node("client"), srv, 5*time.Second); err != nil {
			t.Fatalf("before link down: %v", err)
		}
		if err := link.SetUp(ctx, false); err != nil {
			t.Fatal(err)
		}
		if err := tcpRoundTrip(n.Node("client"), srv, time.Second); err == nil {
			t.Fatal("echo still works with the router-server link down")
		}
		if err := link.SetUp(ctx, true); err != nil {
			t.Fatal(err)
		}
		if err := tcpRoundTrip(n.Node("client"), srv, 5*time.Second); err != nil {
			t.Fatalf("after link up again: %v", err)
		}
	})
}

func TestDropUDPKeepsTCP(t *testing.T) {
	n := testnet.New(t, testnet.ClientRouterServer())
	link := n.Link("client", "router")
	families(t, func(t *testing.T, v6 bool) {
		srv := netip.AddrPortFrom(n.Addr("server", "router", v6), 7009)
		tcpEcho(t, n.Node("server"), srv)
		udpEcho(t, n.Node("server"), srv)
		if err := udpRoundTrip(n.Node("client"), srv, 5*time.Second); err != nil {
			t.Fatalf("udp before drop: %v", err)
		}
		if err := link.DropUDP(); err != nil {
			if testnet.CI() {
				t.Fatal(err)
			}
			t.Skipf("eBPF TCX not available: %v", err)
		}
		if err := udpRoundTrip(n.Node("client"), srv, 500*time.Millisecond); err == nil {
			t.Fatal("udp still crosses a link that drops udp")
		}
		if err := tcpRoundTrip(n.Node("client"), srv, 5*time.Second); err != nil {
			t.Fatalf("tcp while udp is dropped: %v", err)
		}
		if err := link.AllowUDP(); err != nil {
			t.Fatal(err)
		}
		if err := udpRoundTrip(n.Node("client"), srv, 5*time.Second); err != nil {
			t.Fatalf("udp after allow: %v", err)
		}
	})
}

// TestRateLimit runs iperf3 (real processes in the namespaces, output in the
// test log) across a tbf-limited link and expects the limit to hold.
func TestRateLimit(t *testing.T) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		testnet.SkipOrFail(t, "iperf3 not installed (run make deps): %v", err)
	}
	ctx := context.Background()
	n := testnet.New(t, testnet.ClientRouterServer())
	const rate = 50_000_000
	if err := n.Link("router", "server").SetRate(ctx, rate); err != nil {
		t.Fatal(err)
	}
	srv := n.Addr("server", "router", false)
	if _, err := n.Node("server").Start("iperf3", "-s", "-B", srv.String(), "-p", "5201"); err != nil {
		t.Fatal(err)
	}
	var out []byte
	var err error
	for range 100 { // until the server listens
		// iperf3 -J may exit 0 on a refused connection, with the error
		// in its JSON: look at the output, not only the exit status.
		out, err = n.Node("client").Run(ctx, "iperf3", "-c", srv.String(), "-p", "5201", "-t", "3", "-O", "1", "-J")
		if !strings.Contains(strings.ToLower(string(out)), "connection refused") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("iperf3: %v", err)
	}
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("iperf3 -J output: %v", err)
	}
	got := res.End.SumReceived.BitsPerSecond
	t.Logf("tbf %d Mbit/s: iperf3 received %.1f Mbit/s", rate/1_000_000, got/1e6)
	if got < 0.75*rate || got > 1.05*rate {
		t.Fatalf("throughput %.1f Mbit/s, want near the %d Mbit/s limit", got/1e6, rate/1_000_000)
	}
	if err := n.Link("router", "server").SetRate(ctx, 0); err != nil {
		t.Fatalf("remove limit: %v", err)
	}
}

func TestProcessOutputIsLogged(t *testing.T) {
	if err := testnet.Available(); err != nil {
		testnet.SkipOrFail(t, "%v", err)
	}
	var mu sync.Mutex
	var lines []string
	n, err := testnet.Build(context.Background(), testnet.ClientRouterServer(), testnet.Options{
		Logf: func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			lines = append(lines, fmt.Sprintf(format, args...))
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	p, err := n.Node("server").Start("sh", "-c", "echo out-line; echo err-line >&2; ip -o -4 addr show dev eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	all := strings.Join(lines, "\n")
	mu.Unlock()
	for _, want := range []string{"[server sh] out-line", "[server sh] err-line", "198.18.2.2/24"} {
		if !strings.Contains(all, want) {
			t.Errorf("log lacks %q; log:\n%s", want, all)
		}
	}
	// A long-running process is stopped by Close.
	sleeper, err := n.Node("client").Start("sleep", "600")
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sleeper.Done():
	default:
		t.Fatal("Close returned with a process still running")
	}
}

func TestCloseLeavesNothing(t *testing.T) {
	if err := testnet.Available(); err != nil {
		testnet.SkipOrFail(t, "%v", err)
	}
	linksBefore := rootLinks(t)
	n, err := testnet.Build(context.Background(), testnet.ClientRouterServer(), testnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, node := range n.Nodes() {
		names = append(names, node.NS)
	}
	if err := n.Link("client", "router").DropUDP(); err != nil && testnet.CI() {
		t.Fatal(err)
	}
	if _, err := n.Node("server").Start("sleep", "600"); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	left, err := testnet.Namespaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range left {
		for _, mine := range names {
			if ns == mine {
				t.Errorf("namespace %s still exists after Close", ns)
			}
		}
	}
	if after := rootLinks(t); after != linksBefore {
		t.Errorf("root namespace links changed:\nbefore: %s\nafter:  %s", linksBefore, after)
	}
}

func rootLinks(t *testing.T) string {
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range ifs {
		names = append(names, i.Name)
	}
	return strings.Join(names, " ")
}

// TestSweepRemovesLeftovers plays a test binary that was killed mid-way: its
// namespace carries a PID that no longer runs, and Sweep removes it (and
// kills what still runs inside), while namespaces of live PIDs stay.
func TestSweepRemovesLeftovers(t *testing.T) {
	if err := testnet.Available(); err != nil {
		testnet.SkipOrFail(t, "%v", err)
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := fmt.Sprintf("%s%d-dead00-client", testnet.TestPrefix, dead.Process.Pid)
	live := fmt.Sprintf("%s%d-live00-client", testnet.TestPrefix, os.Getppid())
	for _, ns := range []string{stale, live} {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add: %v: %s", err, out)
		}
	}
	t.Cleanup(func() { _, _ = testnet.SweepPrefix(live) })
	orphan := exec.Command("ip", "netns", "exec", stale, "sleep", "600")
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	orphanDone := make(chan error, 1)
	go func() { orphanDone <- orphan.Wait() }()
	for i := 0; ; i++ { // until it has entered the namespace
		out, _ := exec.Command("ip", "netns", "pids", stale).Output()
		if strings.Contains(string(out), fmt.Sprint(orphan.Process.Pid)) {
			break
		}
		if i == 100 {
			t.Fatal("the orphan never entered its namespace")
		}
		time.Sleep(20 * time.Millisecond)
	}

	gone, err := testnet.Sweep()
	if err != nil {
		t.Fatal(err)
	}
	if !contains(gone, stale) {
		t.Errorf("Sweep removed %v, want it to include %s", gone, stale)
	}
	if contains(gone, live) {
		t.Errorf("Sweep removed %s, whose PID is alive", live)
	}
	left, _ := testnet.Namespaces()
	if contains(left, stale) {
		t.Errorf("%s still listed after Sweep", stale)
	}
	select {
	case <-orphanDone:
	case <-time.After(5 * time.Second):
		t.Error("process inside the swept namespace still runs")
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestValidateRefusesForeignAddresses(t *testing.T) {
	topo := testnet.ClientRouterServer()
	topo.Links[0].AAddr = []netip.Prefix{netip.MustParsePrefix("10.0.0.1/24")}
	if err := topo.Validate(); err == nil || !strings.Contains(err.Error(), "outside 198.18.0.0/15") {
		t.Fatalf("Validate = %v, want a refusal of 10.0.0.1", err)
	}
	topo = testnet.ClientRouterServer()
	topo.Nodes[0].Routes = append(topo.Nodes[0].Routes, testnet.Route{Dst: netip.MustParsePrefix("192.168.0.0/16"), Via: netip.MustParseAddr("198.18.1.1")})
	if err := topo.Validate(); err == nil {
		t.Fatal("Validate accepted a route to 192.168.0.0/16")
	}
	topo = testnet.ClientRouterServer()
	topo.Nodes[1].Name = "Router!"
	if err := topo.Validate(); err == nil {
		t.Fatal("Validate accepted a bad node name")
	}
	for name, mk := range testnet.Topologies() {
		topo := mk()
		if err := topo.Validate(); err != nil {
			t.Errorf("built-in topology %s invalid: %v", name, err)
		}
	}
}

func TestDoRestoresNamespace(t *testing.T) {
	n := testnet.New(t, testnet.ClientRouterServer())
	before, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	var inside string
	for range 20 { // many goroutines, many threads: none may stay inside
		err = n.Node("router").Do(func() error {
			inside, err = os.Readlink("/proc/thread-self/ns/net")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if inside == before {
		t.Fatalf("Do ran in the caller's namespace %s", before)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ns, err := os.Readlink("/proc/thread-self/ns/net")
			if err == nil && ns != before {
				err = errors.New("a goroutine runs in namespace " + ns)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestSkipsWithoutRootUnlessCI re-runs a testbed test as an unprivileged
// user: it must skip with the reason, and under CI=true fail loudly instead.
func TestSkipsWithoutRootUnlessCI(t *testing.T) {
	if os.Getenv("ONRAMP_TESTNET_CHILD") != "" {
		t.Skip("child run")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to drop to an unprivileged user")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "onramp-testnet-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := dir + "/testnet.test"
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, ci := range []string{"false", "true"} {
		cmd := exec.Command(bin, "-test.run", "^TestTCPEchoAcrossRouter$", "-test.v")
		cmd.Dir = dir
		cmd.Env = []string{"CI=" + ci, "ONRAMP_TESTNET_CHILD=1", "PATH=" + os.Getenv("PATH"), "HOME=" + dir}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		switch ci {
		case "false":
			if err != nil || !strings.Contains(string(out), "--- SKIP") || !strings.Contains(string(out), "testnet needs root") {
				t.Errorf("as nobody without CI: err=%v, want a skip naming root; output:\n%s", err, out)
			}
		case "true":
			if err == nil || !strings.Contains(string(out), "--- FAIL") || !strings.Contains(string(out), "CI=true and the testbed cannot run: testnet needs root") {
				t.Errorf("as nobody with CI=true: err=%v, want a loud failure; output:\n%s", err, out)
			}
		}
	}
}
