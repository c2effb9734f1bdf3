// Package testnet builds topologies of Linux network namespaces joined by
// veth links, runs processes and Go functions inside them, and tears
// everything down again. End-to-end tests and benchmarks use it.
//
// Every namespace a test makes is named "onrt-PID-RAND-NODE": the prefix
// lets [Sweep] find what a killed earlier run left behind (its PID is gone),
// the random part keeps parallel tests apart. Addresses come only from
// 198.18.0.0/15 and fd00::/8 ([Topology.Validate] enforces it).
//
// Linux only; needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and ip(8).
package testnet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// TestPrefix starts the name of every namespace made by [New]; CLIPrefix
// those of the testnet command.
const (
	TestPrefix = "onrt-"
	CLIPrefix  = "onrcli-"
)

// Net is a topology brought up in network namespaces.
type Net struct {
	Topology Topology
	prefix   string
	logf     func(format string, args ...any)

	mu     sync.Mutex
	nodes  map[string]*Node
	order  []*Node
	links  []*Link
	procs  []*Proc
	undo   []func() error // run in reverse on Close, before namespaces go
	closed bool
}

// Node is one namespace of a Net.
type Node struct {
	Name string // name in the topology
	NS   string // network namespace name (ip netns)
	net  *Net
	ifs  int
}

// Link is a veth pair between two nodes.
type Link struct {
	A, B       *Node
	AIf, BIf   string
	AAddr      []netip.Prefix
	BAddr      []netip.Prefix
	spec       LinkSpec
	dropUDP    []func() error
	dropUDPMux sync.Mutex
}

// Options controls [Build].
type Options struct {
	// Prefix of the namespace names; node names are appended. Default:
	// TestPrefix + PID + "-" + 6 random hex digits + "-".
	Prefix string
	// Logf receives command and process output. Default: discard.
	Logf func(format string, args ...any)
}

// Build brings a topology up. On error, whatever was made is removed.
// The caller must Close the Net.
func Build(ctx context.Context, topo Topology, opt Options) (*Net, error) {
	if err := topo.Validate(); err != nil {
		return nil, err
	}
	if opt.Prefix == "" {
		var r [3]byte
		_, _ = rand.Read(r[:])
		opt.Prefix = fmt.Sprintf("%s%d-%s-", TestPrefix, os.Getpid(), hex.EncodeToString(r[:]))
	}
	if opt.Logf == nil {
		opt.Logf = func(string, ...any) {}
	}
	n := &Net{Topology: topo, prefix: opt.Prefix, logf: opt.Logf, nodes: map[string]*Node{}}
	if err := n.build(ctx); err != nil {
		_ = n.Close()
		return nil, err
	}
	return n, nil
}

func (n *Net) build(ctx context.Context) error {
	for _, spec := range n.Topology.Nodes {
		node := &Node{Name: spec.Name, NS: n.prefix + spec.Name, net: n}
		if err := ip(ctx, "netns", "add", node.NS); err != nil {
			return err
		}
		n.nodes[spec.Name] = node
		n.order = append(n.order, node)
		if err := node.IP(ctx, "link", "set", "lo", "up"); err != nil {
			return err
		}
		sysctls := map[string]string{
			"net/ipv4/conf/all/rp_filter":      "0",
			"net/ipv4/conf/default/rp_filter":  "0",
			"net/ipv6/conf/all/accept_dad":     "0",
			"net/ipv6/conf/default/accept_dad": "0",
			// Keep IPv6 addresses when a link goes down, so SetUp(false)
			// then SetUp(true) restores the link as it was.
			"net/ipv6/conf/all/keep_addr_on_down":     "1",
			"net/ipv6/conf/default/keep_addr_on_down": "1",
		}
		if spec.Forward {
			sysctls["net/ipv4/ip_forward"] = "1"
			sysctls["net/ipv6/conf/all/forwarding"] = "1"
		}
		for k, v := range sysctls {
			if err := node.Sysctl(k, v); err != nil {
				return err
			}
		}
	}
	for _, spec := range n.Topology.Links {
		a, b := n.nodes[spec.A], n.nodes[spec.B]
		l := &Link{A: a, B: b, AIf: spec.AIf, BIf: spec.BIf, AAddr: spec.AAddr, BAddr: spec.BAddr, spec: spec}
		if l.AIf == "" {
			l.AIf = fmt.Sprintf("eth%d", a.ifs)
		}
		if l.BIf == "" {
			l.BIf = fmt.Sprintf("eth%d", b.ifs)
		}
		a.ifs++
		b.ifs++
		// Created directly inside both namespaces: no name ever appears in
		// the root namespace, so parallel tests cannot collide there.
		args := []string{"link", "add", l.AIf, "netns", a.NS}
		if spec.MTU != 0 {
			args = append(args, "mtu", fmt.Sprint(spec.MTU))
		}
		args = append(args, "type", "veth", "peer", "name", l.BIf, "netns", b.NS)
		if spec.MTU != 0 {
			args = append(args, "mtu", fmt.Sprint(spec.MTU))
		}
		if err := ip(ctx, args...); err != nil {
			return err
		}
		n.links = append(n.links, l)
		for _, side := range []struct {
			node  *Node
			ifn   string
			addrs []netip.Prefix
		}{{a, l.AIf, l.AAddr}, {b, l.BIf, l.BAddr}} {
			for _, p := range side.addrs {
				args := []string{"addr", "add", p.String(), "dev", side.ifn}
				if p.Addr().Is6() {
					args = append(args, "nodad")
				}
				if err := side.node.IP(ctx, args...); err != nil {
					return err
				}
			}
			if err := side.node.IP(ctx, "link", "set", side.ifn, "up"); err != nil {
				return err
			}
		}
	}
	for _, node := range n.order {
		if err := n.routes(ctx, node); err != nil {
			return err
		}
	}
	return nil
}

// routes installs (or reinstalls) the node's routes from the topology.
func (n *Net) routes(ctx context.Context, node *Node) error {
	for _, spec := range n.Topology.Nodes {
		if spec.Name != node.Name {
			continue
		}
		for _, r := range spec.Routes {
			fam := "-4"
			if r.Via.Is6() {
				fam = "-6"
			}
			dst := r.Dst.String()
			if r.Dst.Bits() == 0 {
				dst = "default"
			}
			if err := node.IP(ctx, fam, "route", "replace", dst, "via", r.Via.String()); err != nil {
				return err
			}
		}
	}
	return nil
}

// Node returns the node named name, or panics: topologies are static and a
// wrong name is a bug in the test.
func (n *Net) Node(name string) *Node {
	node, ok := n.nodes[name]
	if !ok {
		panic(fmt.Sprintf("testnet: no node %q in topology %s", name, n.Topology.Name))
	}
	return node
}

// Nodes returns the nodes in topology order.
func (n *Net) Nodes() []*Node { return n.order }

// Link returns the link between nodes a and b (either order), or panics.
func (n *Net) Link(a, b string) *Link {
	for _, l := range n.links {
		if (l.A.Name == a && l.B.Name == b) || (l.A.Name == b && l.B.Name == a) {
			return l
		}
	}
	panic(fmt.Sprintf("testnet: no link %s-%s in topology %s", a, b, n.Topology.Name))
}

// Addr returns the first address of node on the link to peer in the family
// of want6, for example n.Addr("server", "router", false).
func (n *Net) Addr(node, peer string, want6 bool) netip.Addr {
	l := n.Link(node, peer)
	addrs := l.AAddr
	if l.B.Name == node {
		addrs = l.BAddr
	}
	for _, p := range addrs {
		if p.Addr().Is6() == want6 {
			return p.Addr()
		}
	}
	panic(fmt.Sprintf("testnet: node %s has no IPv6=%v address towards %s", node, want6, peer))
}

// Close stops every process started in the Net, removes anything attached to
// its links, and deletes its namespaces (which deletes their links). It is
// safe to call more than once.
func (n *Net) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	procs := n.procs
	undo := n.undo
	n.mu.Unlock()

	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Stop()
	}
	for _, l := range n.links {
		l.dropUDPMux.Lock()
		for _, f := range l.dropUDP {
			errs = append(errs, f())
		}
		l.dropUDP = nil
		l.dropUDPMux.Unlock()
	}
	for i := len(undo) - 1; i >= 0; i-- {
		errs = append(errs, undo[i]())
	}
	for i := len(n.order) - 1; i >= 0; i-- {
		errs = append(errs, deleteNS(n.order[i].NS))
	}
	return errors.Join(errs...)
}

// OnClose registers f to run when the Net closes, after its processes
// stopped and before its namespaces are deleted.
func (n *Net) OnClose(f func() error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.undo = append(n.undo, f)
}

// IP runs ip(8) with args inside the node's namespace.
func (node *Node) IP(ctx context.Context, args ...string) error {
	return ip(ctx, append([]string{"-n", node.NS}, args...)...)
}

// Sysctl sets a sysctl inside the node's namespace; key is a path below
// /proc/sys such as "net/ipv4/ip_forward".
func (node *Node) Sysctl(key, value string) error {
	return node.Do(func() error {
		return os.WriteFile("/proc/sys/"+key, []byte(value), 0)
	})
}

// Command returns an exec.Cmd that runs name with args inside the node's
// namespace (through ip netns exec).
func (node *Node) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", node.NS, name}, args...)...)
}

// Run runs a command inside the node's namespace to completion and returns
// its combined output; the output is also logged.
func (node *Node) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := node.Command(ctx, name, args...).CombinedOutput()
	node.net.logf("[%s] %s %s\n%s", node.Name, name, strings.Join(args, " "), out)
	if err != nil {
		return out, fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), node.Name, err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// SetUp sets both ends of the link administratively up or down. Going up
// restores the routes of both end nodes (the kernel drops IPv4 routes
// through a link that goes down).
func (l *Link) SetUp(ctx context.Context, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	if err := l.A.IP(ctx, "link", "set", l.AIf, state); err != nil {
		return err
	}
	if err := l.B.IP(ctx, "link", "set", l.BIf, state); err != nil {
		return err
	}
	if !up {
		return nil
	}
	if err := l.A.net.routes(ctx, l.A); err != nil {
		return err
	}
	return l.B.net.routes(ctx, l.B)
}

// SetRate limits both directions of the link with a tbf qdisc of rate
// bits per second; 0 removes the limit.
func (l *Link) SetRate(ctx context.Context, bitsPerSecond uint64) error {
	for _, side := range []struct {
		node *Node
		ifn  string
	}{{l.A, l.AIf}, {l.B, l.BIf}} {
		if bitsPerSecond == 0 {
			if err := tc(ctx, "-n", side.node.NS, "qdisc", "del", "dev", side.ifn, "root"); err != nil && !strings.Contains(err.Error(), "No such file") && !strings.Contains(err.Error(), "Cannot delete qdisc with handle of zero") {
				return err
			}
			continue
		}
		// A burst of at least rate/HZ (HZ 250..1000) and one MTU; 10 ms of
		// traffic keeps tbf accurate at high rates.
		burst := bitsPerSecond / 8 / 100
		if burst < 16*1024 {
			burst = 16 * 1024
		}
		if err := tc(ctx, "-n", side.node.NS, "qdisc", "replace", "dev", side.ifn, "root", "tbf",
			"rate", fmt.Sprintf("%dbit", bitsPerSecond), "burst", fmt.Sprint(burst), "latency", "50ms"); err != nil {
			return err
		}
	}
	return nil
}

func ip(ctx context.Context, args ...string) error {
	return run(ctx, "ip", args...)
}

func tc(ctx context.Context, args ...string) error {
	return run(ctx, "tc", args...)
}

func run(ctx context.Context, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
