package testnet_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/onramp-net/onramp/testnet"
)

// probe is one user connection of a prober: when it started and how it
// ended.
type probe struct {
	edge       int
	start, end time.Time
	err        error
	hung       bool // no answer and no reset within probeDeadline
}

// probeDeadline bounds a probe: a stream on a dead path must end (reset)
// well before it; one that does not is hung.
const probeDeadline = 8 * time.Second

// prober opens a new user connection to the echo binding of its edges
// every 100 ms, each in its own goroutine, and records how each ended.
type prober struct {
	w     *testnet.MultiEdgeWorld
	user  *testnet.Node
	mu    sync.Mutex
	edges []int
	all   []probe
	stop  chan struct{}
	wg    sync.WaitGroup
}

func startProber(w *testnet.MultiEdgeWorld, user *testnet.Node, edges ...int) *prober {
	p := &prober{w: w, user: user, edges: edges, stop: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
			p.mu.Lock()
			edge := p.edges[i%len(p.edges)]
			p.mu.Unlock()
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				r := p.one(edge)
				p.mu.Lock()
				p.all = append(p.all, r)
				p.mu.Unlock()
			}()
		}
	}()
	return p
}

// setEdges changes the edges new probes go to.
func (p *prober) setEdges(edges ...int) {
	p.mu.Lock()
	p.edges = edges
	p.mu.Unlock()
}

func (p *prober) one(edge int) probe {
	r := probe{edge: edge, start: time.Now()}
	defer func() { r.end = time.Now() }()
	addr := net.JoinHostPort(p.w.Edges[edge].Public, fmt.Sprint(testnet.EdgeEchoPort))
	c, err := p.user.Dial("tcp", addr)
	if err != nil {
		r.err = err
		return r
	}
	defer c.Close()
	_ = c.SetDeadline(r.start.Add(probeDeadline))
	msg := []byte("probe through the tunnel")
	if _, err := c.Write(msg); err != nil {
		r.err = err
		return r
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		r.err = err
		var ne net.Error
		r.hung = errors.As(err, &ne) && ne.Timeout()
		return r
	}
	if string(got) != string(msg) {
		r.err = fmt.Errorf("echo %q", got)
	}
	return r
}

// halt stops the prober and waits for its probes to end.
func (p *prober) halt() []probe {
	close(p.stop)
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	slices.SortFunc(p.all, func(a, b probe) int { return a.start.Compare(b.start) })
	return p.all
}

// recovery returns, for the probes started after t0 to the given edges,
// how long after t0 the first probe started from which every later one
// succeeded (0 if none failed), the failures, and the hung ones.
func recovery(all []probe, t0 time.Time, edges ...int) (resumed time.Duration, failed, hung int, firstErr error) {
	var last time.Time
	for _, r := range all {
		if r.start.Before(t0) || !slices.Contains(edges, r.edge) {
			continue
		}
		if r.err != nil {
			failed++
			last = r.start
			if firstErr == nil {
				firstErr = r.err
			}
		}
		if r.hung {
			hung++
		}
	}
	if failed == 0 {
		return 0, 0, 0, nil
	}
	for _, r := range all {
		if r.start.After(last) && slices.Contains(edges, r.edge) {
			return r.start.Sub(t0), failed, hung, firstErr
		}
	}
	return time.Since(t0), failed, hung, firstErr
}

// TestMultiEdgeFailover plays the failures of an L4 deployment of two edges
// on etcd and two connector replicas (each keeping 4 connections over both
// edges), with users opening a connection every 100 ms throughout:
//   - kill -9 edge A during a bulk download through edge B: the download
//     completes intact, and users of edge B see nothing;
//   - kill -9 one replica: new user connections succeed again within 2 s
//     (the edges stop opening streams on the silent connections), and
//     streams on the dead replica end with a reset, never a hang;
//   - take the other replica's link down for 7 s and up: users are served
//     by the first replica meanwhile, and the replica comes back.
//
// Each recovery time is printed; no probe may hang.
func TestMultiEdgeFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	n, _, w, dir := multiEdgeWorld(t, ctx, false, true)
	tok, err := w.CLI(ctx, 0, "tunnel", "create", "web")
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "web.token")
	if err := os.WriteFile(tokenFile, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	ingress := testnet.DefaultIngressYAML(n.Addr("origin", "lan", false).String())
	r1 := startConnector(t, w, n.Node("conn"), tokenFile, "replica1", ingress)
	r2 := startConnector(t, w, n.Node("conn2"), tokenFile, "replica2", ingress)
	connections := func(edge int) int {
		var ts []struct{ Connections []json.RawMessage }
		if err := w.Admin(ctx, edge, "GET", "/v1/tunnels", &ts); err != nil || len(ts) == 0 {
			return -1
		}
		return len(ts[0].Connections)
	}
	eventually(t, 15*time.Second, "8 connections over the two edges", func() error {
		if a, b := connections(0), connections(1); a+b != 8 || a == 0 || b == 0 {
			return fmt.Errorf("edge A %d, edge B %d", a, b)
		}
		return nil
	})
	user := n.Node("user")
	sourceB := net.JoinHostPort(w.Edges[1].Public, fmt.Sprint(testnet.EdgeSourcePort))

	// 1. Edge A killed during a download through edge B.
	p := startProber(w, user, 0, 1)
	time.Sleep(time.Second)
	dl := make(chan error, 1)
	var dlTime time.Duration
	go func() {
		d, err := user.Download(sourceB, 400<<20)
		dlTime = d
		dl <- err
	}()
	time.Sleep(500 * time.Millisecond)
	t0 := time.Now()
	if err := w.Edges[0].Proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.setEdges(1) // users of edge A go elsewhere (DNS, a load balancer)
	if err := <-dl; err != nil {
		t.Fatalf("download through edge B while edge A died: %v", err)
	}
	t.Logf("edge A killed mid-download: the 400 MiB download through edge B completed intact in %v", dlTime.Round(time.Millisecond))
	time.Sleep(3 * time.Second)
	all := p.halt()
	resumed, failed, hung, firstErr := recovery(all, t0, 1)
	t.Logf("edge A killed: users of edge B: %d failed, %d hung, success throughout after %v (first error: %v)", failed, hung, resumed, firstErr)
	if failed > 0 {
		t.Errorf("users of edge B saw %d failures when edge A died: %v", failed, firstErr)
	}
	// The connectors move their connections to edge B.
	eventually(t, 15*time.Second, "the connections of edge A moved to edge B", func() error {
		if b := connections(1); b != 8 {
			return fmt.Errorf("edge B has %d", b)
		}
		return nil
	})
	if err := w.StartEdge(ctx, 0); err != nil {
		t.Fatal(err)
	}

	// 2. One replica killed.
	p = startProber(w, user, 1)
	time.Sleep(time.Second)
	t0 = time.Now()
	if err := r1.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Second)
	all = p.halt()
	resumed, failed, hung, firstErr = recovery(all, t0, 1)
	t.Logf("replica killed: %d user connections failed (reset), %d hung; new connections succeed throughout after %v (goal < 2s; first error: %v)",
		failed, hung, resumed.Round(time.Millisecond), firstErr)
	if resumed >= 2*time.Second {
		t.Errorf("new user connections failed until %v after the replica died, want < 2s", resumed)
	}
	if hung > 0 {
		t.Errorf("%d user connections hung on the dead replica's connections", hung)
	}
	r1 = startConnector(t, w, n.Node("conn"), tokenFile, "replica1-again", ingress)

	// 3. The other replica's link down for 7 s, then up.
	eventually(t, 15*time.Second, "both replicas connected", func() error {
		if a, b := connections(0), connections(1); a+b != 8 {
			return fmt.Errorf("edge A %d, edge B %d", a, b)
		}
		return nil
	})
	p = startProber(w, user, 0, 1)
	time.Sleep(time.Second)
	link := n.Link("conn2", "inet")
	t0 = time.Now()
	if err := link.SetUp(ctx, false); err != nil {
		t.Fatal(err)
	}
	time.Sleep(7 * time.Second)
	if err := link.SetUp(ctx, true); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	eventually(t, 20*time.Second, "replica 2 back after its link came up", func() error {
		if a, b := connections(0), connections(1); a+b != 8 {
			return fmt.Errorf("edge A %d, edge B %d", a, b)
		}
		return nil
	})
	t.Logf("replica 2's link up: its 4 connections back after %v", time.Since(up).Round(time.Millisecond))
	time.Sleep(time.Second)
	all = p.halt()
	resumed, failed, hung, firstErr = recovery(all, t0, 0, 1)
	t.Logf("replica link down 7s: %d user connections failed, %d hung; success throughout after %v (first error: %v)",
		failed, hung, resumed.Round(time.Millisecond), firstErr)
	if resumed >= 2*time.Second {
		t.Errorf("new user connections failed until %v after the link went down, want < 2s", resumed)
	}
	if hung > 0 {
		t.Errorf("%d user connections hung", hung)
	}
	_ = r1
	_ = r2
	if !strings.Contains(w.Edges[1].Proc.Output(), "connector connection silent") {
		t.Error("edge B never logged a silent connector connection")
	}
}
