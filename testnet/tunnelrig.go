package testnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The packages of the binaries the rigs run.
const (
	EdgePkg      = "github.com/onramp-net/onramp/cmd/edge"
	ConnectorPkg = "github.com/onramp-net/onramp/cmd/connector"
)

// Ports the tunnel rig's edge listens on, on every address.
const (
	EdgeTunnelPort = 7844 // connectors: QUIC (udp) and HTTP/2 (tcp)
	EdgeTLSPort    = 443  // users: TLS by SNI
	EdgeHTTPPort   = 80   // users: HTTP by Host
	EdgeEchoPort   = 7000 // users: tcp and udp bindings to the echo origin
	EdgeSumPort    = 7009 // users: tcp binding to the sum origin
	EdgeSourcePort = 7019 // users: tcp binding to the source origin
	EdgeSlowPort   = 7013 // users: tcp binding to the slow origin
)

// TunnelRig runs the real edge and connector binaries in a [Tunnel]
// topology: the edge in "edge", connectors in "conn" (or any node that
// reaches the edge), the origins in "origin".
type TunnelRig struct {
	Net          *Net
	Dir          string // configuration files and the edge's data
	EdgeBin      string
	ConnectorBin string
	EdgeConfig   string // path of the edge's configuration
	TokenFile    string
	Token        string
	TunnelName   string
	Edge         *Proc
}

// RigOptions shapes [StartTunnelRig].
type RigOptions struct {
	Dir        string // required: a directory the rig owns
	TunnelName string // default "demo"
	// EdgeYAML replaces the routes, bindings and limits of the default edge
	// configuration ([DefaultEdgeYAML]).
	EdgeYAML string
	// EdgeArgs are global flags for edge serve, such as "--log-level", "debug".
	EdgeArgs []string
	// EdgeEnv is added to edge serve's environment, such as
	// "NOTIFY_SOCKET=" + a [NotifySocket]'s Path.
	EdgeEnv []string
	// Console is listen.console, the web console's address; "": off.
	Console string
	// BeforeServe, if set, runs once the configuration is written and
	// the tunnel made, before edge serve starts (to change the
	// configuration as an operator would with the edge's commands).
	BeforeServe func(*TunnelRig) error
}

// DefaultEdgeYAML binds the echo, sum and source origins to edge ports and
// routes *.demo.test by SNI and Host to the tunnel.
func DefaultEdgeYAML(tunnelName string) string {
	return fmt.Sprintf(`routes:
  - {hostname: "*.demo.test", tunnel: %[1]s}
bindings:
  - {listen: "tcp://[::]:%[2]d", tunnel: %[1]s, service: echo.internal}
  - {listen: "udp://[::]:%[2]d", tunnel: %[1]s, service: udpecho.internal}
  - {listen: "tcp://[::]:%[3]d", tunnel: %[1]s, service: sum.internal}
  - {listen: "tcp://[::]:%[4]d", tunnel: %[1]s, service: source.internal}
  - {listen: "tcp://[::]:%[5]d", tunnel: %[1]s, service: slow.internal}
`, tunnelName, EdgeEchoPort, EdgeSumPort, EdgeSourcePort, EdgeSlowPort)
}

// DefaultIngressYAML sends the services of DefaultEdgeYAML to the origins
// at originAddr (an IP literal; IPv6 allowed). secure.demo.test is the
// HTTPS origin reached by SNI through the edge's TLS listener
// (tlsPassthrough); the HTTP listener reaches the HTTP origin.
func DefaultIngressYAML(originAddr string) string {
	host := originAddr
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return fmt.Sprintf(`ingress:
  - {hostname: echo.internal, service: "tcp://%[1]s:%[2]d"}
  - {hostname: udpecho.internal, service: "udp://%[1]s:%[2]d"}
  - {hostname: sum.internal, service: "tcp://%[1]s:%[3]d"}
  - {hostname: source.internal, service: "tcp://%[1]s:%[4]d"}
  - {hostname: slow.internal, service: "tcp://%[1]s:%[7]d"}
  - {hostname: web.demo.test, path: /api, service: "http_status:418"}
  - {hostname: web.demo.test, service: "http://%[1]s:%[5]d"}
  - {hostname: secure.demo.test, service: "tcp://%[1]s:%[6]d", tlsPassthrough: true}
  - {hostname: "*.demo.test", service: "http://%[1]s:%[5]d"}
  - service: "http_status:404"
`, host, OriginEcho, OriginSum, OriginSource, OriginHTTP, OriginHTTPS, OriginSlow)
}

// StartTunnelRig builds the binaries, writes the edge configuration, creates
// the tunnel (edge tunnel create) and starts the edge. Its processes stop
// when the Net closes.
func StartTunnelRig(ctx context.Context, n *Net, opt RigOptions) (*TunnelRig, error) {
	if opt.TunnelName == "" {
		opt.TunnelName = "demo"
	}
	if opt.EdgeYAML == "" {
		opt.EdgeYAML = DefaultEdgeYAML(opt.TunnelName)
	}
	r := &TunnelRig{Net: n, Dir: opt.Dir, TunnelName: opt.TunnelName}
	var err error
	if r.EdgeBin, err = BuildBinary(EdgePkg); err != nil {
		return nil, err
	}
	if r.ConnectorBin, err = BuildBinary(ConnectorPkg); err != nil {
		return nil, err
	}
	edgeAddr := n.Addr("edge", "conn", false)
	edgeAddr6 := n.Addr("edge", "conn", true)
	cfg := fmt.Sprintf(`data: %s
listen:
  tunnels: "[::]:%d"
  tls: "[::]:%d"
  http: "[::]:%d"
  metrics: "%s"
  console: "%s"
advertise: ["%s", "%s"]
%s`, filepath.Join(opt.Dir, "edge-data"), EdgeTunnelPort, EdgeTLSPort, EdgeHTTPPort,
		r.EdgeMetricsAddr(), opt.Console,
		net.JoinHostPort(edgeAddr.String(), fmt.Sprint(EdgeTunnelPort)),
		net.JoinHostPort(edgeAddr6.String(), fmt.Sprint(EdgeTunnelPort)), opt.EdgeYAML)
	r.EdgeConfig = filepath.Join(opt.Dir, "edge.yml")
	if err := os.WriteFile(r.EdgeConfig, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	edge := n.Node("edge")
	out, err := edge.Command(ctx, r.EdgeBin, "--config", r.EdgeConfig, "tunnel", "create", opt.TunnelName).Output()
	if err != nil {
		return nil, fmt.Errorf("edge tunnel create: %w", exitDetail(err))
	}
	r.Token = strings.TrimSpace(string(out))
	r.TokenFile = filepath.Join(opt.Dir, opt.TunnelName+".token")
	if err := os.WriteFile(r.TokenFile, []byte(r.Token+"\n"), 0o600); err != nil {
		return nil, err
	}
	if opt.BeforeServe != nil {
		if err := opt.BeforeServe(r); err != nil {
			return nil, err
		}
	}
	args := append(append([]string{"--config", r.EdgeConfig}, opt.EdgeArgs...), "serve")
	cmd := edge.Command(context.Background(), r.EdgeBin, args...)
	if len(opt.EdgeEnv) > 0 {
		cmd.Env = append(os.Environ(), opt.EdgeEnv...)
	}
	if r.Edge, err = edge.StartCmd(cmd); err != nil {
		return nil, err
	}
	// Ready when its admin socket answers (it binds that last).
	sock := filepath.Join(opt.Dir, "edge-data", "admin.sock")
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return r, nil
		}
		select {
		case <-r.Edge.Done():
			return nil, fmt.Errorf("edge exited at start: %v", r.Edge.Wait())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("edge not ready after 15s")
		}
	}
}

// exitDetail adds what a failed command printed on stderr to its error.
func exitDetail(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
	}
	return err
}

// EdgeCLI runs the edge binary with the rig's configuration and args (for
// example "tunnel", "list") inside the edge node and returns its stdout.
func (r *TunnelRig) EdgeCLI(ctx context.Context, args ...string) (string, error) {
	cmd := r.Net.Node("edge").Command(ctx, r.EdgeBin, append([]string{"--config", r.EdgeConfig}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("edge %s: %w", strings.Join(args, " "), exitDetail(err))
	}
	return string(out), nil
}

// Connector is a connector process of a rig.
type Connector struct {
	*Proc
	Node    *Node
	Ingress string // path of its ingress file
	Metrics string // its /metrics and /ready address, inside Node
}

// EdgeMetricsAddr is where the rig's edge serves /metrics, inside the edge node.
func (r *TunnelRig) EdgeMetricsAddr() string {
	return net.JoinHostPort(r.Net.Addr("edge", "conn", false).String(), "9100")
}

// EdgeMetrics returns the edge's /metrics text.
func (r *TunnelRig) EdgeMetrics() (string, error) {
	return r.Net.Node("edge").Metrics(r.EdgeMetricsAddr())
}

// AddTunnel creates another tunnel on the running edge (edge tunnel create
// over its admin socket, which applies the routes and bindings of the edge
// configuration that name it) and writes its token to a file in the rig's
// directory, whose path it returns: a second tenant, for the tests that play
// one tunnel's connector against another's users.
func (r *TunnelRig) AddTunnel(ctx context.Context, name string) (tokenFile string, err error) {
	out, err := r.EdgeCLI(ctx, "tunnel", "create", name)
	if err != nil {
		return "", err
	}
	tokenFile = filepath.Join(r.Dir, name+".token")
	if err := os.WriteFile(tokenFile, []byte(strings.TrimSpace(out)+"\n"), 0o600); err != nil {
		return "", err
	}
	return tokenFile, nil
}

// StartConnector writes ingress to a file and starts a connector in node
// with the rig's token, the transport protocol ("quic", "http2", "auto")
// and extra flags.
func (r *TunnelRig) StartConnector(node *Node, name, protocol, ingress string, extra ...string) (*Connector, error) {
	return r.StartTunnelConnector(node, r.TokenFile, name, protocol, ingress, extra...)
}

// StartTunnelConnector is [TunnelRig.StartConnector] with the token in
// tokenFile (from [TunnelRig.AddTunnel]). Each connector of a node needs
// its own metrics address: pass --metrics in extra for a second one.
func (r *TunnelRig) StartTunnelConnector(node *Node, tokenFile, name, protocol, ingress string, extra ...string) (*Connector, error) {
	path := filepath.Join(r.Dir, name+"-ingress.yml")
	if err := os.WriteFile(path, []byte(ingress), 0o644); err != nil {
		return nil, err
	}
	c := &Connector{Node: node, Ingress: path, Metrics: "127.0.0.1:9200"}
	for i, a := range extra {
		if a == "--metrics" && i+1 < len(extra) {
			c.Metrics = extra[i+1]
		} else if v, ok := strings.CutPrefix(a, "--metrics="); ok {
			c.Metrics = v
		}
	}
	args := []string{"tunnel", "run", "--token-file", tokenFile, "--config", path, "--protocol", protocol}
	if !slices.Contains(extra, "--metrics") && !slices.ContainsFunc(extra, func(a string) bool { return strings.HasPrefix(a, "--metrics=") }) {
		args = append(args, "--metrics", c.Metrics)
	}
	args = append(args, extra...)
	p, err := node.Start(r.ConnectorBin, args...)
	if err != nil {
		return nil, err
	}
	c.Proc = p
	return c, nil
}

// WaitReady waits until the connector's /ready answers 200 (a tunnel
// connection is live), the process exits, or timeout passes.
func (c *Connector) WaitReady(timeout time.Duration) error {
	client := c.Node.HTTPClient(2 * time.Second)
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get("http://" + c.Metrics + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-c.Done():
			return fmt.Errorf("connector exited: %v", c.Wait())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("connector not ready after %v (last: %v)", timeout, err)
		}
	}
}

// RSS returns the process's resident set size in bytes (VmRSS).
func (p *Proc) RSS() (int64, error) {
	rss, _, err := p.MemStatus()
	return rss, err
}

// Dial connects from inside the node.
func (node *Node) Dial(network, addr string) (net.Conn, error) {
	return node.DialFrom(netip.Addr{}, network, addr)
}

// HTTPClient returns a client whose connections are made inside the node.
func (node *Node) HTTPClient(timeout time.Duration) *http.Client {
	return node.httpClientFrom(netip.Addr{}, timeout)
}
