package testnet

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// L3 ports: the edge's WireGuard hub and metrics, and each connector's
// metrics (/ready) inside its own namespace.
const (
	L3EdgePort        = 51820
	L3EdgeMetrics     = "198.18.100.1:9100"
	L3ConnectorReady  = "127.0.0.1:9201"
	l3ReadyTimeout    = 20 * time.Second
	l3EdgeStartupWait = 15 * time.Second
)

// L3World is the L3 on-ramp running in an [L3] testnet: `edge serve` with
// its WireGuard hub on the edge's public address, and the connectors the
// test starts. Clients come from [Node.WGQuickUp] with the configuration
// `edge l3 client add` printed.
type L3World struct {
	Net          *Net
	Dir          string
	EdgeBin      string
	ConnectorBin string
	EdgeConfig   string
	Edge         *Proc
}

// L3EdgeYAML is the edge configuration of an L3 world: the hub on
// L3EdgePort with the endpoint L3Edge4, the pools L3Pool4 and L3Pool6,
// metrics on L3EdgeMetrics, and acl (YAML of an l3router.ACLConfig,
// indented for the l3 block; empty for the built-in policy).
func L3EdgeYAML(data, acl string) string {
	y := fmt.Sprintf(`data: %s
listen:
  tunnels: ""
  metrics: "%s"
l3:
  listen: "[::]:%d"
  endpoint: "%s"
  pools: {ipv4: %s, ipv6: "%s"}
`, data, L3EdgeMetrics, L3EdgePort, net.JoinHostPort(L3Edge4.String(), fmt.Sprint(L3EdgePort)), L3Pool4, L3Pool6)
	if acl != "" {
		y += "  acl:\n" + acl
	}
	return y
}

// StartL3World puts the edge's public address on the edge node, writes
// the edge configuration (L3EdgeYAML with acl) into dir and starts `edge
// serve`, returning once its admin socket answers.
func StartL3World(ctx context.Context, n *Net, dir, acl string) (*L3World, error) {
	return StartL3WorldYAML(ctx, n, dir, func(data string) string { return L3EdgeYAML(data, acl) })
}

// StartL3WorldYAML is [StartL3World] with the edge configuration that
// yaml returns for the edge's data directory.
func StartL3WorldYAML(ctx context.Context, n *Net, dir string, yaml func(data string) string) (*L3World, error) {
	w, err := newL3World(ctx, n, dir)
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "edge-data")
	w.EdgeConfig = filepath.Join(dir, "edge.yml")
	if err := os.WriteFile(w.EdgeConfig, []byte(yaml(data)), 0o644); err != nil {
		return nil, err
	}
	if err := w.startEdge(ctx, data, l3EdgeStartupWait); err != nil {
		return nil, err
	}
	return w, nil
}

// newL3World builds the binaries and puts the edge's public address on
// the edge node.
func newL3World(ctx context.Context, n *Net, dir string) (*L3World, error) {
	w := &L3World{Net: n, Dir: dir}
	var err error
	if w.EdgeBin, err = BuildBinary(EdgePkg); err != nil {
		return nil, err
	}
	if w.ConnectorBin, err = BuildBinary(ConnectorPkg); err != nil {
		return nil, err
	}
	if err := AddL3EdgeAddress(ctx, n); err != nil {
		return nil, err
	}
	return w, nil
}

// startEdge starts `edge serve` with w.EdgeConfig and waits up to wait
// for its admin socket in data to answer.
func (w *L3World) startEdge(ctx context.Context, data string, wait time.Duration) error {
	var err error
	if w.Edge, err = w.Net.Node("edge").Start(w.EdgeBin, "--config", w.EdgeConfig, "serve"); err != nil {
		return err
	}
	sock := filepath.Join(data, "admin.sock")
	deadline := time.Now().Add(wait)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-w.Edge.Done():
			return fmt.Errorf("edge exited at start: %v\n%s", w.Edge.Wait(), w.Edge.Output())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("edge not ready after %v\n%s", wait, w.Edge.Output())
		}
	}
}

// EdgeCLI runs the edge binary with the world's configuration and args in
// the edge node (so it talks to the running edge over the admin socket)
// and returns its standard output.
func (w *L3World) EdgeCLI(ctx context.Context, args ...string) (string, error) {
	cmd := w.Net.Node("edge").Command(ctx, w.EdgeBin, append([]string{"--config", w.EdgeConfig}, args...)...)
	out, err := cmd.Output()
	w.Net.logf("[edge] edge %s\n%s", strings.Join(args, " "), out)
	if err != nil {
		return string(out), fmt.Errorf("edge %s: %w", strings.Join(args, " "), exitDetail(err))
	}
	return string(out), nil
}

// AddConnector registers an L3 connector as a user does, the connector
// making its own key: `connector l3 init --key KEY` in node (the
// connector's host) writes the private key to KEY (config with ".key" for
// its ".yml") and prints the public key, which `edge l3 connector add NAME
// --subnet ... --public-key PUB --key-file KEY --out config` registers on
// the edge. It returns the public key.
func (w *L3World) AddConnector(ctx context.Context, node *Node, name, config string, subnets ...string) (string, error) {
	return addL3Connector(ctx, w.Net, w.ConnectorBin, w.EdgeCLI, node, name, config, subnets)
}

// addL3Connector makes the connector's key in node (connector l3 init)
// and registers it with edgeCLI (edge l3 connector add ... --out config);
// it returns the public key.
func addL3Connector(ctx context.Context, n *Net, connBin string, edgeCLI func(context.Context, ...string) (string, error),
	node *Node, name, config string, subnets []string) (string, error) {
	key := strings.TrimSuffix(config, ".yml") + ".key"
	out, err := node.Command(ctx, connBin, "l3", "init", "--key", key).Output()
	n.logf("[%s] connector l3 init --key %s\n%s", node.Name, key, out)
	if err != nil {
		return "", fmt.Errorf("connector l3 init in %s: %w", node.Name, exitDetail(err))
	}
	pub := strings.TrimSpace(string(out))
	args := []string{"l3", "connector", "add", name, "--public-key", pub, "--key-file", key, "--out", config}
	for _, s := range subnets {
		args = append(args, "--subnet", s)
	}
	if _, err := edgeCLI(ctx, args...); err != nil {
		return "", err
	}
	return pub, nil
}

// StartConnector runs `connector l3 run` with the l3.yml at config in
// node and waits until its /ready answers 200 (its first handshake with
// the edge).
func (w *L3World) StartConnector(node *Node, config string) (*Proc, error) {
	return startL3Connector(w.ConnectorBin, node, config)
}

func startL3Connector(bin string, node *Node, config string) (*Proc, error) {
	p, err := node.Start(bin, "l3", "run", "--config", config, "--metrics", L3ConnectorReady)
	if err != nil {
		return nil, err
	}
	client := node.HTTPClient(2 * time.Second)
	deadline := time.Now().Add(l3ReadyTimeout)
	for {
		resp, err := client.Get("http://" + L3ConnectorReady + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case <-p.Done():
			return nil, fmt.Errorf("connector in %s exited: %v\n%s", node.Name, p.Wait(), p.Output())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("connector in %s not ready after %v\n%s", node.Name, l3ReadyTimeout, p.Output())
		}
	}
}

// EdgeMetrics returns the edge's /metrics text.
func (w *L3World) EdgeMetrics() (string, error) {
	return w.Net.Node("edge").Metrics(L3EdgeMetrics)
}
