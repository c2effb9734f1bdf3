package testnet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// EtcdBinary is the etcd server the tests start: Debian's etcd-server
// (3.4 on bookworm), found in PATH.
const EtcdBinary = "etcd"

// Ports every etcd member listens on, at its address only.
const (
	EtcdClientPort = 2379
	EtcdPeerPort   = 2380
)

// EtcdAvailable reports why no etcd cluster can start here, or nil: the
// testbed must run ([Available]) and etcd must be in PATH.
func EtcdAvailable() error {
	if err := Available(); err != nil {
		return err
	}
	if _, err := exec.LookPath(EtcdBinary); err != nil {
		return fmt.Errorf("etcd cluster needs %s (Debian's etcd-server; run make deps): %w", EtcdBinary, err)
	}
	return nil
}

// EtcdOptions shapes [StartEtcdWith].
type EtcdOptions struct {
	// Dir is required: each member's data directory is Dir/<node name>.
	Dir string
	// Addrs are the members' addresses, one per node. Default: each
	// node's first address of the family (IPv4, or IPv6 with IPv6) in the
	// topology's link order, which is the address on its only link for
	// MultiEdge's etcd nodes.
	Addrs []netip.Addr
	// IPv6 picks the nodes' IPv6 addresses when Addrs is empty.
	IPv6 bool
	// Raft timing in milliseconds. Default 50 and 500: a new leader about
	// half a second to a second after the old one died.
	HeartbeatMS, ElectionMS int
	// Args are more flags for every member.
	Args []string
}

// EtcdCluster is a real etcd cluster, one member per node of a Net. Its
// members stop when the Net closes (or on [EtcdCluster.Close]); a member
// killed with Kill starts again with Start on the same data directory and
// rejoins.
type EtcdCluster struct {
	Net     *Net
	Members []*EtcdMember
}

// EtcdMember is one member of an [EtcdCluster].
type EtcdMember struct {
	Name    string // the node's name, also the member's name
	Node    *Node
	Addr    netip.Addr
	DataDir string

	args []string
	mu   sync.Mutex
	proc *Proc // nil before the first start
}

// ClientURL is the member's client URL, http://addr:2379.
func (m *EtcdMember) ClientURL() string {
	return "http://" + netip.AddrPortFrom(m.Addr, EtcdClientPort).String()
}

// PeerURL is the member's peer URL, http://addr:2380.
func (m *EtcdMember) PeerURL() string {
	return "http://" + netip.AddrPortFrom(m.Addr, EtcdPeerPort).String()
}

// Proc is the member's current process (nil if it never started).
func (m *EtcdMember) Proc() *Proc {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.proc
}

// Running reports whether the member's process is alive.
func (m *EtcdMember) Running() bool {
	p := m.Proc()
	if p == nil {
		return false
	}
	select {
	case <-p.Done():
		return false
	default:
		return true
	}
}

// StartEtcd starts a cluster of one member per node, data below dir, with
// the default options, and waits until every member is healthy (bounded by
// ctx, and by one minute if ctx has no deadline).
func StartEtcd(ctx context.Context, n *Net, nodes []*Node, dir string) (*EtcdCluster, error) {
	return StartEtcdWith(ctx, n, nodes, EtcdOptions{Dir: dir})
}

// StartEtcdWith is [StartEtcd] with options.
func StartEtcdWith(ctx context.Context, n *Net, nodes []*Node, opt EtcdOptions) (*EtcdCluster, error) {
	if err := EtcdAvailable(); err != nil {
		return nil, err
	}
	bin, _ := exec.LookPath(EtcdBinary)
	if len(nodes) == 0 {
		return nil, errors.New("testnet: etcd: no nodes")
	}
	if opt.Dir == "" {
		return nil, errors.New("testnet: etcd: EtcdOptions.Dir is required")
	}
	if opt.Addrs != nil && len(opt.Addrs) != len(nodes) {
		return nil, fmt.Errorf("testnet: etcd: %d addresses for %d nodes", len(opt.Addrs), len(nodes))
	}
	if opt.HeartbeatMS == 0 {
		opt.HeartbeatMS = 50
	}
	if opt.ElectionMS == 0 {
		opt.ElectionMS = 500
	}
	c := &EtcdCluster{Net: n}
	seen := map[string]bool{}
	var initial []string
	for i, node := range nodes {
		if seen[node.Name] {
			return nil, fmt.Errorf("testnet: etcd: two members on node %s", node.Name)
		}
		seen[node.Name] = true
		var a netip.Addr
		if opt.Addrs != nil {
			a = opt.Addrs[i]
		} else {
			a = n.firstAddr(node, opt.IPv6)
		}
		if !a.IsValid() || !Allowed(a) {
			return nil, fmt.Errorf("testnet: etcd: node %s: no usable address (have %v)", node.Name, a)
		}
		m := &EtcdMember{Name: node.Name, Node: node, Addr: a, DataDir: filepath.Join(opt.Dir, node.Name)}
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.PeerURL())
	}
	var tok [6]byte
	_, _ = rand.Read(tok[:])
	for _, m := range c.Members {
		if err := os.MkdirAll(m.DataDir, 0o700); err != nil {
			return nil, err
		}
		m.args = append([]string{bin,
			"--name", m.Name,
			"--data-dir", m.DataDir,
			"--listen-client-urls", m.ClientURL(),
			"--advertise-client-urls", m.ClientURL(),
			"--listen-peer-urls", m.PeerURL(),
			"--initial-advertise-peer-urls", m.PeerURL(),
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new", // ignored once the data directory holds a member
			"--initial-cluster-token", "onrt-" + hex.EncodeToString(tok[:]),
			"--heartbeat-interval", strconv.Itoa(opt.HeartbeatMS),
			"--election-timeout", strconv.Itoa(opt.ElectionMS),
			// A member back from a partition asks before it campaigns,
			// so it does not depose a leader that is doing fine.
			"--pre-vote=true",
			// Clients may ping a stream every second (the default
			// enforcement is 5s): a client finds a member behind a dead
			// link quickly.
			"--grpc-keepalive-min-time", "1s",
			"--logger", "zap", "--log-level", "warn", "--log-outputs", "stderr",
		}, opt.Args...)
	}
	for i := range c.Members {
		if err := c.Start(i); err != nil {
			c.Close()
			return nil, err
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Minute)
		defer cancel()
	}
	if err := c.WaitHealthy(ctx); err != nil {
		var out []string
		for _, m := range c.Members {
			if p := m.Proc(); p != nil {
				out = append(out, fmt.Sprintf("--- %s:\n%s", m.Name, tail(p.Output(), 20)))
			}
		}
		c.Close()
		return nil, fmt.Errorf("testnet: etcd cluster not healthy: %w\n%s", err, strings.Join(out, "\n"))
	}
	return c, nil
}

// NewEtcd starts an etcd cluster of one member on each named node of n for
// the test t (data in a temporary directory of t), waits until it is
// healthy, and stops it when t ends. It skips t (fails it under CI=true)
// when etcd is missing.
//
//	n := testnet.New(t, testnet.MultiEdge())
//	etcd := testnet.NewEtcd(t, n, testnet.MultiEdgeEtcd...)
func NewEtcd(t testing.TB, n *Net, nodes ...string) *EtcdCluster {
	t.Helper()
	if err := EtcdAvailable(); err != nil {
		SkipOrFail(t, "%v", err)
	}
	var ns []*Node
	for _, name := range nodes {
		ns = append(ns, n.Node(name))
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	c, err := StartEtcd(ctx, n, ns, dir)
	if err != nil {
		t.Fatalf("start etcd on %v: %v", nodes, err)
	}
	t.Logf("etcd: %d members healthy after %v: %v", len(ns), time.Since(start).Round(time.Millisecond), c.Endpoints())
	// Registered after TempDir, so it runs first: the members stop
	// before their data directories go.
	t.Cleanup(c.Close)
	return c
}

// firstAddr returns node's first address of the family in link order.
func (n *Net) firstAddr(node *Node, want6 bool) netip.Addr {
	for _, l := range n.links {
		var addrs []netip.Prefix
		switch node {
		case l.A:
			addrs = l.AAddr
		case l.B:
			addrs = l.BAddr
		default:
			continue
		}
		for _, p := range addrs {
			if p.Addr().Is6() == want6 {
				return p.Addr()
			}
		}
	}
	return netip.Addr{}
}

// Member returns member i.
func (c *EtcdCluster) Member(i int) *EtcdMember { return c.Members[i] }

// Endpoints returns every member's client URL, in member order.
func (c *EtcdCluster) Endpoints() []string {
	eps := make([]string, len(c.Members))
	for i, m := range c.Members {
		eps[i] = m.ClientURL()
	}
	return eps
}

// Link returns the link that carries member i's address, to take the
// member off the network (Link(i).SetUp(ctx, false)) while it keeps
// running.
func (c *EtcdCluster) Link(i int) *Link {
	m := c.Members[i]
	for _, l := range c.Net.links {
		var addrs []netip.Prefix
		switch m.Node {
		case l.A:
			addrs = l.AAddr
		case l.B:
			addrs = l.BAddr
		default:
			continue
		}
		for _, p := range addrs {
			if p.Addr() == m.Addr {
				return l
			}
		}
	}
	panic(fmt.Sprintf("testnet: etcd member %s: no link carries %s", m.Name, m.Addr))
}

// Start starts member i: the first time as part of a new cluster, later on
// its data directory, where it rejoins the cluster it belongs to. It does
// not wait; see [EtcdCluster.WaitHealthy].
func (c *EtcdCluster) Start(i int) error {
	m := c.Members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc != nil {
		select {
		case <-m.proc.Done():
		default:
			return fmt.Errorf("testnet: etcd member %s is running", m.Name)
		}
	}
	cmd := m.Node.Command(context.Background(), m.args[0], m.args[1:]...)
	// ETCD_* variables are flags to etcd: none from our environment.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	p, err := m.Node.StartCmd(cmd)
	if err != nil {
		return fmt.Errorf("testnet: etcd member %s: %w", m.Name, err)
	}
	m.proc = p
	return nil
}

// Kill kills member i with SIGKILL (a crash: nothing flushed, no goodbye
// to its peers) and waits until it is gone. Killing a stopped member is a
// no-op.
func (c *EtcdCluster) Kill(i int) error {
	return c.Members[i].signal(syscall.SIGKILL)
}

// Stop stops member i with SIGTERM (etcd shuts down cleanly, a leader
// hands over its leadership first), SIGKILL after 3 seconds.
func (c *EtcdCluster) Stop(i int) error {
	p := c.Members[i].Proc()
	if p != nil {
		p.Stop()
	}
	return nil
}

// Pause freezes member i with SIGSTOP: its connections stay open and
// nothing answers on them, as with a host that hangs. Resume thaws it. A
// paused member still counts as running (Running, Healthy, Leader).
func (c *EtcdCluster) Pause(i int) error {
	return c.Members[i].sendSignal(syscall.SIGSTOP)
}

// Resume thaws member i after Pause.
func (c *EtcdCluster) Resume(i int) error {
	return c.Members[i].sendSignal(syscall.SIGCONT)
}

func (m *EtcdMember) sendSignal(sig syscall.Signal) error {
	p := m.Proc()
	if p == nil {
		return fmt.Errorf("testnet: etcd member %s never started", m.Name)
	}
	if err := syscall.Kill(-p.Cmd.Process.Pid, sig); err != nil {
		return fmt.Errorf("testnet: etcd member %s: %v: %w", m.Name, sig, err)
	}
	return nil
}

// Isolate cuts member i's node off from every other node without a word:
// an nftables table in its namespace drops everything in and out but
// loopback, so peers and clients see silence (no reset, no ICMP error),
// unlike Link(i).SetUp(ctx, false), after which the routers answer
// "network unreachable". The process runs on, and Status still reaches it
// from its own node. Isolate(ctx, i, false) lets traffic through again.
func (c *EtcdCluster) Isolate(ctx context.Context, i int, on bool) error {
	node := c.Members[i].Node
	rules := `table inet onrt_isolate {
	chain in {
		type filter hook input priority -300; policy drop;
		iif "lo" accept
	}
	chain out {
		type filter hook output priority -300; policy drop;
		oif "lo" accept
	}
}
`
	if !on {
		rules = "delete table inet onrt_isolate\n"
	}
	cmd := node.Command(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	out, err := cmd.CombinedOutput()
	c.Net.logf("[%s] nft -f -\n%s%s", node.Name, rules, out)
	if err != nil {
		return fmt.Errorf("nft in %s: %w: %s", node.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (m *EtcdMember) signal(sig syscall.Signal) error {
	p := m.Proc()
	if p == nil {
		return nil
	}
	select {
	case <-p.Done():
		return nil
	default:
	}
	// Its own process group (Setpgid); ip netns exec became etcd.
	if err := syscall.Kill(-p.Cmd.Process.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("testnet: etcd member %s: %w", m.Name, err)
	}
	select {
	case <-p.Done():
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("testnet: etcd member %s still running 10s after %v", m.Name, sig)
	}
}

// Close kills every member. Their data directories stay (the caller owns
// Dir).
func (c *EtcdCluster) Close() {
	for _, m := range c.Members {
		_ = m.signal(syscall.SIGKILL)
	}
}

// Running returns the indexes of the members whose process is alive.
func (c *EtcdCluster) Running() []int {
	var r []int
	for i, m := range c.Members {
		if m.Running() {
			r = append(r, i)
		}
	}
	return r
}

// EtcdStatus is what a member says of itself and the cluster.
type EtcdStatus struct {
	ID, Leader                 uint64 // member IDs; Leader 0: it knows no leader
	RaftTerm, RaftIndex        uint64
	RaftAppliedIndex, Revision uint64
	Version                    string
}

// Status asks member i for its status (the v3 JSON gateway, from the
// member's own node, so a member cut off by a link still answers).
func (c *EtcdCluster) Status(ctx context.Context, i int) (EtcdStatus, error) {
	m := c.Members[i]
	var raw struct {
		Header struct {
			MemberID string `json:"member_id"`
			Revision string `json:"revision"`
		} `json:"header"`
		Version          string `json:"version"`
		Leader           string `json:"leader"`
		RaftTerm         string `json:"raftTerm"`
		RaftIndex        string `json:"raftIndex"`
		RaftAppliedIndex string `json:"raftAppliedIndex"`
	}
	if err := m.post(ctx, "/v3/maintenance/status", &raw); err != nil {
		return EtcdStatus{}, err
	}
	u := func(s string) uint64 { v, _ := strconv.ParseUint(s, 10, 64); return v }
	st := EtcdStatus{
		ID: u(raw.Header.MemberID), Leader: u(raw.Leader),
		RaftTerm: u(raw.RaftTerm), RaftIndex: u(raw.RaftIndex),
		RaftAppliedIndex: u(raw.RaftAppliedIndex), Revision: u(raw.Header.Revision),
		Version: raw.Version,
	}
	if st.ID == 0 {
		return st, fmt.Errorf("testnet: etcd member %s: status without member ID", m.Name)
	}
	return st, nil
}

// Leader returns the index of the member that is leader, by the word of
// the running members (asked at once, each for at most a second, so a
// frozen one does not hold it up): of those that call themselves leader,
// the one of the highest term (an old leader cut off from its peers may
// still think it leads until its election timeout). -1 and an error if
// none does.
func (c *EtcdCluster) Leader(ctx context.Context) (int, error) {
	running := c.Running()
	sts := make([]EtcdStatus, len(running))
	errs := make([]error, len(running))
	var wg sync.WaitGroup
	for k, i := range running {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			sts[k], errs[k] = c.Status(ctx, i)
		})
	}
	wg.Wait()
	best, bestTerm := -1, uint64(0)
	for k, i := range running {
		if st := sts[k]; errs[k] == nil && st.Leader == st.ID && st.RaftTerm >= bestTerm {
			best, bestTerm = i, st.RaftTerm
		}
	}
	if best < 0 {
		return -1, fmt.Errorf("testnet: etcd: no leader among running members %v: %w", running, errors.Join(errs...))
	}
	return best, nil
}

// WaitLeader polls until a member is leader and returns its index.
func (c *EtcdCluster) WaitLeader(ctx context.Context) (int, error) {
	for {
		i, err := c.Leader(ctx)
		if err == nil {
			return i, nil
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Healthy returns nil if every running member reports itself healthy
// (etcd's /health: it knows a leader and a quorum read succeeds), from
// the member's own node; each is asked for at most 3 seconds, all at once.
// Stopped members are left out; none running is an error.
func (c *EtcdCluster) Healthy(ctx context.Context) error {
	running := c.Running()
	if len(running) == 0 {
		return errors.New("testnet: etcd: no member running")
	}
	errs := make([]error, len(running))
	var wg sync.WaitGroup
	for k, i := range running {
		wg.Go(func() {
			m := c.Members[i]
			var h struct {
				Health string `json:"health"`
			}
			if err := m.get(ctx, "/health", &h); err != nil {
				errs[k] = err
			} else if h.Health != "true" {
				errs[k] = fmt.Errorf("etcd member %s: health %q", m.Name, h.Health)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// WaitHealthy polls [EtcdCluster.Healthy] until it succeeds. It gives up
// early if a member exits.
func (c *EtcdCluster) WaitHealthy(ctx context.Context) error {
	running := c.Running()
	for {
		err := c.Healthy(ctx)
		if err == nil {
			return nil
		}
		for _, i := range running {
			m := c.Members[i]
			if !m.Running() {
				return fmt.Errorf("etcd member %s exited: %v\n%s", m.Name, m.Proc().Wait(), tail(m.Proc().Output(), 20))
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Client returns an etcd client whose connections are made inside the node
// from (which must reach the members), to endpoints (default: every
// member). It pings each connection every second, so a member behind a
// dead link drops out of its balancer within about two seconds, and
// redials a member that comes back within a second. The caller closes it.
func (c *EtcdCluster) Client(from *Node, endpoints ...string) (*clientv3.Client, error) {
	if len(endpoints) == 0 {
		endpoints = c.Endpoints()
	}
	return clientv3.New(clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    time.Second,
		DialKeepAliveTimeout: time.Second,
		Logger:               zap.NewNop(),
		DialOptions: []grpc.DialOption{
			grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
				_, hostport, ok := strings.Cut(addr, "://")
				if !ok {
					hostport = addr
				}
				return from.DialContext(ctx, "tcp", hostport)
			}),
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
				MinConnectTimeout: 2 * time.Second,
			}),
		},
	})
}

// DialContext connects from inside the node; ctx bounds the connect.
func (node *Node) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := node.Do(func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

func (m *EtcdMember) get(ctx context.Context, path string, v any) error {
	return m.request(ctx, http.MethodGet, path, nil, v)
}

func (m *EtcdMember) post(ctx context.Context, path string, v any) error {
	return m.request(ctx, http.MethodPost, path, strings.NewReader("{}"), v)
}

// request makes one request to the member's client URL from its own node,
// bounded by ctx and by 3 seconds (a member without quorum answers
// /health only after its request timeout).
func (m *EtcdMember) request(ctx context.Context, method, path string, body io.Reader, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, m.ClientURL()+path, body)
	if err != nil {
		return err
	}
	cl := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext:       m.Node.DialContext,
	}}
	resp, err := cl.Do(req)
	if err != nil {
		return fmt.Errorf("etcd member %s: %w", m.Name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("etcd member %s: %s: %w", m.Name, path, err)
	}
	// /health answers 503 with a body when unhealthy: decode either way.
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("etcd member %s: %s: HTTP %d: %q", m.Name, path, resp.StatusCode, b)
	}
	return nil
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
