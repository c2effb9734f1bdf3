package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/onramp-net/onramp/l3router/l3config"
	"github.com/onramp-net/onramp/testnet"
)

// demoL3 runs the L3 part of the demo in the [testnet.L3] world: the edge's
// WireGuard hub, connectors for two sites, and a stock WireGuard client
// (wireguard-go set up by wg-quick) with the config `edge l3 client add`
// printed.
func demoL3(ctx context.Context, logf func(string, ...any)) error {
	if err := testnet.WGQuickAvailable(); err != nil {
		return fmt.Errorf("L3 demo: %w", err)
	}
	n, err := testnet.Build(ctx, testnet.L3(), testnet.Options{Logf: logf})
	if err != nil {
		return err
	}
	defer func() {
		if err := n.Close(); err != nil {
			say("[l3] teardown: %v", err)
		} else {
			say("[l3] torn down: processes stopped, namespaces deleted")
		}
	}()
	say("[l3] testnet up: client - edge (198.18.100.1) - conn - lan 198.18.130.0/24, and edge - conn2 - lan2 198.18.140.0/24")
	dir, err := os.MkdirTemp("", "onramp-demo-l3-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	say("[l3] building edge, connector and the stock wireguard-go ...")
	if _, err := testnet.WireGuardGo(); err != nil {
		return err
	}
	acl := "    rules:\n      - {action: allow, from: {kinds: [connector]}, to: {kinds: [connector]}}\n"
	w, err := testnet.StartL3World(ctx, n, dir, acl)
	if err != nil {
		return err
	}
	say("[l3] edge: WireGuard hub on %s:%d, client pools %s and %s", testnet.L3Edge4, testnet.L3EdgePort, testnet.L3Pool4, testnet.L3Pool6)
	siteA, siteB := filepath.Join(dir, "site-a.yml"), filepath.Join(dir, "site-b.yml")
	// Each connector host makes its own key (connector l3 init); the edge
	// registers the public key and prints an l3.yml naming the key file.
	for _, c := range []struct {
		node, name, file string
		subnets          []string
	}{
		{"conn", "site-a", siteA, []string{"198.18.130.0/24", "fd00:130::/64"}},
		{"conn2", "site-b", siteB, []string{"198.18.140.0/24", "fd00:140::/64"}},
	} {
		pub, err := w.AddConnector(ctx, n.Node(c.node), c.name, c.file, c.subnets...)
		if err != nil {
			return err
		}
		say("[l3] %s: connector l3 init made its key, public key %s; edge l3 connector add %s --public-key registered it", c.node, pub, c.name)
	}
	if _, err := w.EdgeCLI(ctx, "l3", "connector", "config", "site-a", "--out", siteA); err != nil {
		return err
	}
	conf, err := w.EdgeCLI(ctx, "l3", "client", "add", "alice")
	if err != nil {
		return err
	}
	client, err := l3config.ParseClient([]byte(conf))
	if err != nil {
		return fmt.Errorf("the printed client config does not parse: %w", err)
	}
	var vip4, vip6 netip.Addr
	for _, a := range client.Addresses {
		if a.Addr().Is4() {
			vip4 = a.Addr()
		} else {
			vip6 = a.Addr()
		}
	}
	say("[l3] edge l3 client add alice: wg-quick config with %s, %s; connectors site-a and site-b registered", vip4, vip6)
	for _, s := range []struct{ node, file string }{{"conn", siteA}, {"conn2", siteB}} {
		if _, err := w.StartConnector(n.Node(s.node), s.file); err != nil {
			return err
		}
	}
	say("[l3] connectors up in conn and conn2: kernel TUN, handshake with the edge done")
	if _, err := n.Node("client").WGQuickUp(ctx, fmt.Sprintf("onrdemo%d", os.Getpid()%100000), []byte(conf)); err != nil {
		return err
	}
	say("[l3] client: wg-quick up with the printed config (stock wireguard-go)")
	if _, err := n.Node("lan").ServeOrigins(); err != nil {
		return err
	}
	if _, err := n.Node("lan2").ServeOrigins(); err != nil {
		return err
	}

	var failed []string
	check := func(what string, f func() (string, error)) {
		detail, err := f()
		if err != nil {
			failed = append(failed, fmt.Sprintf("[l3] %s: %v", what, err))
			say("[l3] FAIL %s: %v", what, err)
			return
		}
		say("[l3] ok   %s: %s", what, detail)
	}
	cl, lan := n.Node("client"), n.Node("lan")
	check("ping the LAN host 198.18.130.2 and fd00:130::2", func() (string, error) {
		for _, dst := range []string{"198.18.130.2", "fd00:130::2"} {
			if _, err := cl.Run(ctx, "ping", "-c", "3", "-i", "0.2", "-W", "5", dst); err != nil {
				return "", err
			}
		}
		return "3 of 3 answered each", nil
	})
	check("HTTP to the LAN host, which sees the client's virtual address", func() (string, error) {
		addr := "198.18.130.2:" + fmt.Sprint(testnet.OriginHTTP)
		code, body, err := cl.HTTPGet(addr, addr, "/")
		if err != nil {
			return "", err
		}
		if code != 200 || !strings.Contains(body, vip4.String()) {
			return "", fmt.Errorf("status %d, body %q: want the source %s", code, body, vip4)
		}
		return fmt.Sprintf("200 %q", strings.TrimSpace(body)), nil
	})
	const bulk = 64 << 20
	check("bulk upload 64 MiB over IPv6, SHA-256 checked", func() (string, error) {
		d, err := cl.Upload(net.JoinHostPort("fd00:130::2", fmt.Sprint(testnet.OriginSum)), bulk)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%v, %s", d.Round(time.Millisecond), testnet.MBps(bulk, d)), nil
	})
	check("the LAN host connects to the client at "+vip4.String(), func() (string, error) {
		var ln net.Listener
		if err := cl.Do(func() (err error) { ln, err = net.Listen("tcp", net.JoinHostPort(vip4.String(), "7007")); return err }); err != nil {
			return "", err
		}
		defer ln.Close()
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.Write([]byte("hello from alice\n"))
				c.Close()
			}
		}()
		c, err := lan.Dial("tcp", net.JoinHostPort(vip4.String(), "7007"))
		if err != nil {
			return "", err
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 64)
		k, err := c.Read(buf)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%q", strings.TrimSpace(string(buf[:k]))), nil
	})
	check("site to site: lan (site A) to lan2 (site B), source kept", func() (string, error) {
		addr := "198.18.140.2:" + fmt.Sprint(testnet.OriginHTTP)
		code, body, err := lan.HTTPGet(addr, addr, "/")
		if err != nil {
			return "", err
		}
		if code != 200 || !strings.Contains(body, "198.18.130.2") {
			return "", fmt.Errorf("status %d, body %q: want the source 198.18.130.2", code, body)
		}
		return fmt.Sprintf("200 %q", strings.TrimSpace(body)), nil
	})
	check("UDP echo, 20 datagrams", func() (string, error) {
		return "all came back", cl.UDPEcho("198.18.130.2:"+fmt.Sprint(testnet.OriginEcho), 20)
	})
	if out, err := w.EdgeCLI(ctx, "l3", "client", "list"); err == nil {
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			say("[l3] edge l3 client list | %s", line)
		}
	}
	if len(failed) > 0 {
		return errors.New("L3 demo failed:\n  " + strings.Join(failed, "\n  "))
	}
	say("[l3] passed: a stock WireGuard client reached a LAN through the edge and a connector, both ways, IPv4 and IPv6, and site to site")
	return nil
}
