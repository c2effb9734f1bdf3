package testnet

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// MultiEdgeWorld is two edges (nodes "edge" and "edge2" of [MultiEdge])
// sharing their state in an etcd cluster, each a real `edge serve`.
type MultiEdgeWorld struct {
	Net     *Net
	Dir     string
	Etcd    *EtcdCluster
	EdgeBin string
	ConnBin string
	Edges   []*WorldEdge
}

// WorldEdge is one edge of a MultiEdgeWorld.
type WorldEdge struct {
	Node   *Node
	Config string // edge.yml
	Data   string
	Proc   *Proc
	// Public is the edge's address that users and connectors reach.
	Public string
}

// StartMultiEdge builds the binaries and starts an edge on each of the
// nodes "edge" and "edge2", both on the etcd cluster, with the bindings of
// bindingsYAML (routes, bindings: as [DefaultEdgeYAML]). Each edge
// advertises both edges' addresses, so one token names both.
func StartMultiEdge(ctx context.Context, n *Net, dir string, etcd *EtcdCluster, bindingsYAML string, opts ...MultiEdgeOption) (*MultiEdgeWorld, error) {
	w, err := PrepareMultiEdge(n, dir, etcd, bindingsYAML, false, opts...)
	if err != nil {
		return nil, err
	}
	for i := range w.Edges {
		if err := w.StartEdge(ctx, i); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// MultiEdgeOption adds to the edges' configuration of [PrepareMultiEdge].
type MultiEdgeOption func(e *WorldEdge) string

// MultiEdgeFloat4 is the floating address of [WithMultiEdgeL3]'s clients:
// a test puts it on one edge's loopback and routes it there from inet
// ([MultiEdgeWorld.MoveFloat]).
var MultiEdgeFloat4 = addr("198.18.70.1")

// WithMultiEdgeL3 gives each edge the L3 on-ramp: the WireGuard hub on
// every address (its public one, and MultiEdgeFloat4 while it holds it) at
// L3EdgePort, l3.endpoint its own public address (connectors keep a
// session with each edge), l3.client_endpoint clientEndpoint if not empty,
// and the same pools, L3Pool4 and L3Pool6.
func WithMultiEdgeL3(clientEndpoint string) MultiEdgeOption {
	return func(e *WorldEdge) string {
		y := fmt.Sprintf(`l3:
  listen: "[::]:%d"
  endpoint: "%s"
  pools: {ipv4: %s, ipv6: "%s"}
`, L3EdgePort, net.JoinHostPort(e.Public, fmt.Sprint(L3EdgePort)), L3Pool4, L3Pool6)
		if clientEndpoint != "" {
			y += fmt.Sprintf("  client_endpoint: %q\n", clientEndpoint)
		}
		return y
	}
}

// PrepareMultiEdge is StartMultiEdge without starting the edges; with
// ownAdvertise each edge advertises only its own address (as an edge
// added to a deployment later would), so that connectors learn of the
// other from the edges, not from their token. Each option adds to each
// edge's configuration.
func PrepareMultiEdge(n *Net, dir string, etcd *EtcdCluster, bindingsYAML string, ownAdvertise bool, opts ...MultiEdgeOption) (*MultiEdgeWorld, error) {
	w := &MultiEdgeWorld{Net: n, Dir: dir, Etcd: etcd}
	var err error
	if w.EdgeBin, err = BuildBinary(EdgePkg); err != nil {
		return nil, err
	}
	if w.ConnBin, err = BuildBinary(ConnectorPkg); err != nil {
		return nil, err
	}
	names := []string{"edge", "edge2"}
	var advertise []string
	for _, name := range names {
		a := n.Addr(name, "inet", false)
		advertise = append(advertise, fmt.Sprintf("%q", net.JoinHostPort(a.String(), fmt.Sprint(EdgeTunnelPort))))
	}
	var eps []string
	for _, e := range etcd.Endpoints() {
		eps = append(eps, fmt.Sprintf("%q", e))
	}
	for i, name := range names {
		adv := advertise
		if ownAdvertise {
			adv = advertise[i : i+1]
		}
		e := &WorldEdge{Node: n.Node(name), Data: filepath.Join(dir, name+"-data"), Config: filepath.Join(dir, name+".yml"),
			Public: n.Addr(name, "inet", false).String()}
		cfg := fmt.Sprintf(`data: %s
listen:
  tunnels: "[::]:%d"
  metrics: "%s"
advertise: [%s]
registry:
  etcd:
    endpoints: [%s]
    prefix: /onramp-test/
    request_timeout: 3s
%s`, e.Data, EdgeTunnelPort, net.JoinHostPort(e.Public, "9100"), strings.Join(adv, ", "), strings.Join(eps, ", "), bindingsYAML)
		for _, o := range opts {
			if !strings.HasSuffix(cfg, "\n") {
				cfg += "\n"
			}
			cfg += o(e)
		}
		if err := os.WriteFile(e.Config, []byte(cfg), 0o644); err != nil {
			return nil, err
		}
		w.Edges = append(w.Edges, e)
	}
	return w, nil
}

// StartEdge starts edge i (again, after a kill) and waits for its admin
// socket.
func (w *MultiEdgeWorld) StartEdge(ctx context.Context, i int) error {
	e := w.Edges[i]
	var err error
	if e.Proc, err = e.Node.Start(w.EdgeBin, "--config", e.Config, "serve"); err != nil {
		return err
	}
	sock := filepath.Join(e.Data, "admin.sock")
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-e.Proc.Done():
			return fmt.Errorf("edge %s exited at start: %v\n%s", e.Node.Name, e.Proc.Wait(), e.Proc.Output())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("edge %s not ready after 20s", e.Node.Name)
		}
	}
}

// MoveFloat routes MultiEdgeFloat4 from inet to edge i, and puts it on
// edge i's loopback if it is not there yet. It stays on the loopback of
// edges that had it (anycast: the route decides which edge gets the
// packets): an edge that lost the address while running would answer its
// clients from its own address, and a stock client roams to the address
// it hears from (see README, "Several edges").
func (w *MultiEdgeWorld) MoveFloat(ctx context.Context, i int) error {
	if err := w.Edges[i].Node.IP(ctx, "addr", "replace", MultiEdgeFloat4.String()+"/32", "dev", "lo"); err != nil {
		return err
	}
	return w.Net.Node("inet").IP(ctx, "route", "replace", MultiEdgeFloat4.String()+"/32", "via", w.Edges[i].Public)
}

// AddL3Connector registers an L3 connector on edge i as a user does
// ([L3World.AddConnector]): `connector l3 init --key KEY` in node, then
// `edge l3 connector add NAME --subnet ... --public-key PUB --key-file KEY
// --out config`. It returns the public key.
func (w *MultiEdgeWorld) AddL3Connector(ctx context.Context, i int, node *Node, name, config string, subnets ...string) (string, error) {
	cli := func(ctx context.Context, args ...string) (string, error) { return w.CLI(ctx, i, args...) }
	return addL3Connector(ctx, w.Net, w.ConnBin, cli, node, name, config, subnets)
}

// StartL3Connector runs `connector l3 run` with the l3.yml at config in
// node and waits until its /ready answers 200.
func (w *MultiEdgeWorld) StartL3Connector(node *Node, config string) (*Proc, error) {
	return startL3Connector(w.ConnBin, node, config)
}

// CLI runs the edge binary with edge i's config inside its node and
// returns its stdout, or an error with what it printed on stderr.
func (w *MultiEdgeWorld) CLI(ctx context.Context, i int, args ...string) (string, error) {
	e := w.Edges[i]
	out, err := e.Node.Command(ctx, w.EdgeBin, append([]string{"--config", e.Config}, args...)...).Output()
	if err != nil {
		return string(out), fmt.Errorf("edge %s: %w", strings.Join(args, " "), exitDetail(err))
	}
	return string(out), nil
}

// Admin sends a request to edge i's admin socket (a unix socket in its
// data directory: reachable from the test's namespace) and decodes the
// JSON answer into out (if not nil). An error answer is returned as an
// error with the edge's message.
func (w *MultiEdgeWorld) Admin(ctx context.Context, i int, method, path string, out any) error {
	sock := filepath.Join(w.Edges[i].Data, "admin.sock")
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	req, err := http.NewRequestWithContext(ctx, method, "http://edge"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct{ Error string }
		_ = json.Unmarshal(body, &e)
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, e.Error)
	}
	if out != nil {
		return json.Unmarshal(body, out)
	}
	return nil
}

// LogTimes returns, for each line of the process's output that contains
// every one of substrings, the value of key= and the time= of the line:
// when the edge logged it (slog's text format).
func LogTimes(output, key string, substrings ...string) map[string]time.Time {
	out := map[string]time.Time{}
	sc := bufio.NewScanner(strings.NewReader(output))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
lines:
	for sc.Scan() {
		line := sc.Text()
		for _, s := range substrings {
			if !strings.Contains(line, s) {
				continue lines
			}
		}
		ts := fieldValue(line, "time")
		v := fieldValue(line, key)
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil || v == "" {
			continue
		}
		out[v] = t
	}
	return out
}

// fieldValue returns the value of key=value in a slog text line.
func fieldValue(line, key string) string {
	i := strings.Index(line, " "+key+"=")
	if i < 0 {
		if !strings.HasPrefix(line, key+"=") {
			return ""
		}
		i = -1
	}
	v := line[i+len(key)+2:]
	if strings.HasPrefix(v, `"`) {
		if j := strings.Index(v[1:], `"`); j >= 0 {
			return v[1 : j+1]
		}
		return ""
	}
	if j := strings.IndexByte(v, ' '); j >= 0 {
		v = v[:j]
	}
	return v
}

// ErrNoLine is what WaitLog returns when no line came in time.
var ErrNoLine = errors.New("no such log line")

// WaitLog waits until the process printed a line containing every one of
// substrings, and returns it.
func WaitLog(p *Proc, timeout time.Duration, substrings ...string) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		for _, line := range strings.Split(p.Output(), "\n") {
			ok := true
			for _, s := range substrings {
				ok = ok && strings.Contains(line, s)
			}
			if ok {
				return line, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%w after %v: %q", ErrNoLine, timeout, substrings)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
