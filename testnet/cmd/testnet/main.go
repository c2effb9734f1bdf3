// Command testnet brings a named topology of network namespaces up and down
// so a person can poke at it with ip netns exec.
//
//	testnet up [crs]   build it (namespaces named onrcli-NODE)
//	testnet status     list the onrcli- namespaces and their addresses
//	testnet down       delete every onrcli- namespace
//	testnet list       name the topologies
//	testnet demo [-v]  the L4 tunnel demo (make demo)
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"

	"github.com/onramp-net/onramp/testnet"
)

func usage() {
	fmt.Fprint(os.Stderr, `usage: testnet <command> [topology]

commands:
  up [NAME]   bring topology NAME up (default crs); namespaces are onrcli-NODE
  status      show the onrcli- namespaces and their addresses
  down        delete every onrcli- namespace and what runs in it
  list        list the topologies
  demo [-v]   run the demo: edge, connector and origins in a fresh testnet,
              traffic through the tunnel over QUIC and HTTP/2, then teardown

Enter a node with:  ip netns exec onrcli-client bash
Needs root and ip(8) from iproute2.
`)
}

func main() {
	flag.Usage = usage
	flag.Parse()
	if flag.NArg() < 1 {
		usage()
		os.Exit(2)
	}
	if err := run(flag.Arg(0), flag.Args()[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "testnet:", err)
		os.Exit(1)
	}
}

func run(cmd string, args []string) error {
	topos := testnet.Topologies()
	switch cmd {
	case "demo":
		verbose := len(args) > 0 && args[0] == "-v"
		return demo(verbose)
	case "list":
		var names []string
		for name := range topos {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			topo := topos[name]()
			var nodes []string
			for _, n := range topo.Nodes {
				nodes = append(nodes, n.Name)
			}
			fmt.Printf("%-8s %s\n", name, strings.Join(nodes, " - "))
		}
		return nil
	case "up":
		name := "crs"
		if len(args) > 0 {
			name = args[0]
		}
		mk, ok := topos[name]
		if !ok {
			return fmt.Errorf("no topology %q (testnet list shows them)", name)
		}
		if existing, _ := namespaces(); len(existing) > 0 {
			return fmt.Errorf("a testnet is already up (%s); run testnet down first", strings.Join(existing, ", "))
		}
		if err := testnet.Available(); err != nil {
			return err
		}
		n, err := testnet.Build(context.Background(), mk(), testnet.Options{Prefix: testnet.CLIPrefix})
		if err != nil {
			return err
		}
		// Leave it up: the namespaces outlive this process until "down".
		fmt.Printf("topology %s is up:\n", name)
		return status(n.Nodes())
	case "status":
		names, err := namespaces()
		if err != nil {
			return err
		}
		if len(names) == 0 {
			fmt.Println("no testnet is up")
			return nil
		}
		var nodes []*testnet.Node
		for _, ns := range names {
			nodes = append(nodes, &testnet.Node{Name: strings.TrimPrefix(ns, testnet.CLIPrefix), NS: ns})
		}
		return status(nodes)
	case "down":
		gone, err := testnet.SweepPrefix(testnet.CLIPrefix)
		for _, ns := range gone {
			fmt.Println("deleted", ns)
		}
		return err
	default:
		usage()
		return fmt.Errorf("unknown command %q", cmd)
	}
}

func namespaces() ([]string, error) {
	all, err := testnet.Namespaces()
	var mine []string
	for _, ns := range all {
		if strings.HasPrefix(ns, testnet.CLIPrefix) {
			mine = append(mine, ns)
		}
	}
	sort.Strings(mine)
	return mine, err
}

func status(nodes []*testnet.Node) error {
	for _, node := range nodes {
		out, err := exec.Command("ip", "-n", node.NS, "-br", "addr").Output()
		if err != nil {
			return fmt.Errorf("ip -n %s addr: %w", node.NS, err)
		}
		fmt.Printf("%s  (ip netns exec %s bash)\n", node.Name, node.NS)
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if !strings.HasPrefix(line, "lo ") {
				fmt.Printf("    %s\n", line)
			}
		}
	}
	return nil
}
