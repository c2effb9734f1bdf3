package testnet_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l3router/l3config"
	"github.com/onramp-net/onramp/testnet"
)

// TestL3NAT: an edge with two public addresses, and a stock WireGuard
// client (wireguard-go, wg-quick) behind a NAT writing to the second one.
// The NAT passes back only what comes from the address the client wrote
// to: the edge's handshake response and the traffic it forwards must leave
// from it, not from the source the routing table picks (the edge's link
// address towards the NAT, 198.18.110.1 or fd00:110::1). Over IPv4, then
// IPv6 (the client's endpoint moved with wg set). Then the edge restarted
// with l3.listen naming the second address listens there alone, and the
// client and the connector get through to it.
func TestL3NAT(t *testing.T) {
	if err := testnet.WGQuickAvailable(); err != nil {
		testnet.SkipOrFail(t, "L3 behind NAT: %v", err)
	}
	if _, err := exec.LookPath("nft"); err != nil {
		testnet.SkipOrFail(t, "L3 behind NAT: nft not found (apt-get install nftables, or make deps)")
	}
	n := testnet.New(t, testnet.L3NAT())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	w, err := testnet.StartL3World(ctx, n, dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := testnet.AddL3EdgeSecondAddress(ctx, n); err != nil {
		t.Fatal(err)
	}
	if err := n.Node("client").Masquerade(ctx, "eth0"); err != nil {
		t.Fatal(err)
	}
	siteA := filepath.Join(dir, "site-a.yml")
	if _, err := w.AddConnector(ctx, n.Node("conn"), "site-a", siteA, "198.18.130.0/24", "fd00:130::/64"); err != nil {
		t.Fatal(err)
	}
	connA, err := w.StartConnector(n.Node("conn"), siteA)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Node("lan").ServeOrigins(); err != nil {
		t.Fatal(err)
	}
	conf, err := w.EdgeCLI(ctx, "l3", "client", "add", "alice")
	if err != nil {
		t.Fatal(err)
	}
	alice, err := l3config.ParseClient([]byte(conf))
	if err != nil {
		t.Fatalf("edge l3 client add printed a config that does not parse: %v\n%s", err, conf)
	}
	first := netip.AddrPortFrom(testnet.L3Edge4, testnet.L3EdgePort)
	second := netip.AddrPortFrom(testnet.L3EdgeSecond4, testnet.L3EdgePort)
	second6 := netip.AddrPortFrom(testnet.L3EdgeSecond6, testnet.L3EdgePort)
	if alice.Endpoint != first.String() {
		t.Fatalf("alice's endpoint is %q, want %v", alice.Endpoint, first)
	}
	conf = strings.Replace(conf, "Endpoint = "+first.String(), "Endpoint = "+second.String(), 1)
	home := n.Node("home")
	iface := fmt.Sprintf("onrn%d", os.Getpid()%1000000)
	wq, err := home.WGQuickUp(ctx, iface, []byte(conf))
	if err != nil {
		t.Fatal(err)
	}

	// reach checks that alice, behind the NAT, pings the LAN host and
	// gets its HTTP origin's page (which names her virtual address), over
	// IPv4 and IPv6 inside the tunnel, and that her client still has the
	// edge at endpoint (wireguard-go moves to wherever authenticated
	// packets come from).
	reach := func(t *testing.T, endpoint netip.AddrPort, wait time.Duration) {
		families(t, func(t *testing.T, v6 bool) {
			dst := lanAddr(v6)
			if err := waitFor(wait, func() bool {
				_, err := home.Run(ctx, "ping", "-c", "1", "-W", "2", dst.String())
				return err == nil
			}); err != nil {
				t.Fatalf("alice behind the NAT, writing to %v, cannot ping %s: %v", endpoint, dst, err)
			}
			if _, err := home.Run(ctx, "ping", "-c", "3", "-i", "0.2", "-W", "5", dst.String()); err != nil {
				t.Fatalf("ping %s: %v", dst, err)
			}
			web := netip.AddrPortFrom(dst, testnet.OriginHTTP).String()
			code, body, err := home.HTTPGet(web, web, "/")
			if err != nil || code != 200 {
				t.Fatalf("GET http://%s/: %d %v", web, code, err)
			}
			for _, a := range alice.Addresses {
				if vip := a.Addr(); vip.Is6() == v6 && !strings.Contains(body, vip.String()) {
					t.Fatalf("the LAN host saw alice as %q, want her virtual address %s", strings.TrimSpace(body), vip)
				}
			}
		})
		dump, err := wq.Show(ctx)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(dump), "\n")
		if len(lines) != 2 {
			t.Fatalf("wg show %s dump: want the interface and one peer:\n%s", iface, dump)
		}
		peer := strings.Split(lines[1], "\t")
		if len(peer) < 5 || peer[2] != endpoint.String() || peer[4] == "0" {
			t.Fatalf("alice's client has the edge at %q (last handshake %q), want %v after a handshake:\n%s", peer[2], peer[4], endpoint, dump)
		}
	}
	t.Run("SecondAddressIPv4", func(t *testing.T) { reach(t, second, 20*time.Second) })
	// A client process writes to one family for its life: stock
	// wireguard-go (this version) misaddresses some IPv6 packets once it
	// has sent IPv4 (its pooled UDPAddr keeps a 4-byte IP that only 4
	// bytes of the IPv6 address are copied into), so the IPv6 endpoint
	// gets a client of its own, as a user's new config would.
	t.Run("SecondAddressIPv6", func(t *testing.T) {
		if err := wq.Down(ctx); err != nil {
			t.Fatal(err)
		}
		conf6 := strings.Replace(conf, "Endpoint = "+second.String(), "Endpoint = "+second6.String(), 1)
		if wq, err = home.WGQuickUp(ctx, iface, []byte(conf6)); err != nil {
			t.Fatal(err)
		}
		reach(t, second6, 20*time.Second)
	})
	if t.Failed() {
		return
	}

	// l3.listen names the second address (and so does l3.endpoint, which
	// the configs printed from now on carry).
	t.Run("ListenOneAddress", func(t *testing.T) {
		yaml := testnet.L3EdgeYAML(filepath.Join(dir, "edge-data"), "")
		for from, to := range map[string]string{
			fmt.Sprintf("listen: %q", fmt.Sprintf("[::]:%d", testnet.L3EdgePort)): fmt.Sprintf("listen: %q", second),
			fmt.Sprintf("endpoint: %q", first):                                    fmt.Sprintf("endpoint: %q", second),
		} {
			if !strings.Contains(yaml, from) {
				t.Fatalf("the L3 edge config has no %s:\n%s", from, yaml)
			}
			yaml = strings.Replace(yaml, from, to, 1)
		}
		if err := w.RestartEdge(ctx, yaml); err != nil {
			t.Fatal(err)
		}
		out, err := n.Node("edge").Run(ctx, "ss", "-Hunl", fmt.Sprintf("sport = :%d", testnet.L3EdgePort))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if f := strings.Fields(line); len(f) < 4 || f[3] != second.String() {
				t.Fatalf("the edge listens on %v, want %v alone:\n%s", f, second, out)
			}
		}
		// The connector gets its config printed again, with the new
		// endpoint, and is restarted (its session died with the edge).
		if _, err := w.EdgeCLI(ctx, "l3", "connector", "config", "site-a", "--out", siteA); err != nil {
			t.Fatal(err)
		}
		connA.Stop()
		if connA, err = w.StartConnector(n.Node("conn"), siteA); err != nil {
			t.Fatal(err)
		}
		// alice's client is brought down and up (the edge forgot her
		// session), writing to the second address (IPv4) through the NAT
		// again.
		if err := wq.Down(ctx); err != nil {
			t.Fatal(err)
		}
		if wq, err = home.WGQuickUp(ctx, iface, []byte(conf)); err != nil {
			t.Fatal(err)
		}
		reach(t, second, 40*time.Second)
	})
}
