package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/onramp-net/onramp/testnet"
)

// demo is `make demo`: two local testnets, one per on-ramp. L4: a user,
// the edge, a connector and a private origin; traffic crosses the tunnel
// over QUIC and then over HTTP/2. L3: a stock WireGuard client, the edge's
// hub and two connector sites; packets cross both ways and site to site.
// Everything is torn down; a non-zero exit if anything failed.
func demo(verbose bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	if err := testnet.Available(); err != nil {
		return err
	}
	if gone, _ := testnet.Sweep(); len(gone) > 0 {
		say("swept %d namespaces left by an earlier run", len(gone))
	}
	logf := func(string, ...any) {}
	if verbose {
		logf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, "    | "+format+"\n", args...) }
	}
	errL4 := demoL4(ctx, logf)
	if errL4 != nil {
		say("L4 part failed: %v", errL4)
	}
	errL3 := demoL3(ctx, logf)
	if err := errors.Join(errL4, errL3); err != nil {
		return err
	}
	say("demo passed: both on-ramps carried traffic")
	return nil
}

// demoL4 runs the L4 tunnel part of the demo.
func demoL4(ctx context.Context, logf func(string, ...any)) error {
	n, err := testnet.Build(ctx, testnet.Tunnel(), testnet.Options{Logf: logf})
	if err != nil {
		return err
	}
	defer func() {
		if err := n.Close(); err != nil {
			say("teardown: %v", err)
		} else {
			say("torn down: processes stopped, namespaces deleted")
		}
	}()
	say("testnet up: user - edge - conn - origin (user and edge have no route to the origin's network)")

	dir, err := os.MkdirTemp("", "onramp-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if _, err := n.Node("origin").ServeOrigins(); err != nil {
		return err
	}
	say("origin 198.18.30.2: HTTP :%d, TCP echo :%d, sum :%d, source :%d, UDP echo :%d",
		testnet.OriginHTTP, testnet.OriginEcho, testnet.OriginSum, testnet.OriginSource, testnet.OriginEcho)
	say("building edge and connector ...")
	rig, err := testnet.StartTunnelRig(ctx, n, testnet.RigOptions{Dir: dir})
	if err != nil {
		return err
	}
	say("edge: tunnel %q created (token %s...), listening for connectors on %s:%d",
		rig.TunnelName, rig.Token[:16], n.Addr("edge", "conn", false), testnet.EdgeTunnelPort)

	user := n.Node("user")
	edge := n.Addr("edge", "user", false).String()
	edge6 := n.Addr("edge", "user", true).String()
	var failed []string
	for _, proto := range []string{"quic", "http2"} {
		conn, err := rig.StartConnector(n.Node("conn"), "conn-"+proto, proto, testnet.DefaultIngressYAML("198.18.30.2"))
		if err != nil {
			return err
		}
		if err := conn.WaitReady(20 * time.Second); err != nil {
			return fmt.Errorf("[%s] %w", proto, err)
		}
		say("[%s] connector up: dialed out to the edge, /ready is 200", proto)
		check := func(what string, f func() (string, error)) {
			detail, err := f()
			if err != nil {
				failed = append(failed, fmt.Sprintf("[%s] %s: %v", proto, what, err))
				say("[%s] FAIL %s: %v", proto, what, err)
				return
			}
			say("[%s] ok   %s: %s", proto, what, detail)
		}
		check("HTTP by Host web.demo.test", func() (string, error) {
			code, body, err := user.HTTPGet(net.JoinHostPort(edge, fmt.Sprint(testnet.EdgeHTTPPort)), "web.demo.test", "/")
			if err != nil {
				return "", err
			}
			if code != 200 || !strings.Contains(body, "hello from origin") {
				return "", fmt.Errorf("status %d, body %q", code, body)
			}
			return fmt.Sprintf("200 %q", strings.TrimSpace(body)), nil
		})
		check("HTTP path rule /api", func() (string, error) {
			code, _, err := user.HTTPGet(net.JoinHostPort(edge, fmt.Sprint(testnet.EdgeHTTPPort)), "web.demo.test", "/api/x")
			if err != nil {
				return "", err
			}
			if code != 418 {
				return "", fmt.Errorf("status %d, want 418 from the http_status rule", code)
			}
			return "418 from the connector's http_status rule", nil
		})
		const bulk = 256 << 20
		check("bulk upload 256 MiB, SHA-256 checked", func() (string, error) {
			d, err := user.Upload(net.JoinHostPort(edge, fmt.Sprint(testnet.EdgeSumPort)), bulk)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("%v, %s", d.Round(time.Millisecond), testnet.MBps(bulk, d)), nil
		})
		check("bulk download 256 MiB over IPv6, content checked", func() (string, error) {
			d, err := user.Download(net.JoinHostPort(edge6, fmt.Sprint(testnet.EdgeSourcePort)), bulk)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("%v, %s", d.Round(time.Millisecond), testnet.MBps(bulk, d)), nil
		})
		check("UDP echo, 20 datagrams", func() (string, error) {
			return "all came back", user.UDPEcho(net.JoinHostPort(edge, fmt.Sprint(testnet.EdgeEchoPort)), 20)
		})
		conn.Stop()
		say("[%s] connector stopped (SIGTERM: drained and exited)", proto)
	}
	if len(failed) > 0 {
		return errors.New("L4 demo failed:\n  " + strings.Join(failed, "\n  "))
	}
	say("L4 passed: the tunnel carried HTTP, TCP bulk and UDP over QUIC and over HTTP/2")
	return nil
}

func say(format string, args ...any) {
	fmt.Printf("demo: "+format+"\n", args...)
}
