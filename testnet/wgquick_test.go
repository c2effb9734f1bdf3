package testnet_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l3router/l3config"
	"github.com/onramp-net/onramp/testnet"
)

// TestWGQuickStockPair brings up two stock WireGuard peers with wg-quick
// across a router and sends TCP through the tunnel both ways, IPv4 and
// IPv6: the stock client the L3 tests and benchmarks rely on works here.
func TestWGQuickStockPair(t *testing.T) {
	if err := testnet.WGQuickAvailable(); err != nil {
		testnet.SkipOrFail(t, "stock WireGuard client: %v", err)
	}
	n := testnet.New(t, testnet.ClientRouterServer())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ka, _ := l3config.GeneratePrivateKey()
	kb, _ := l3config.GeneratePrivateKey()
	ifA, ifB := fmt.Sprintf("wgta%d", os.Getpid()%100000), fmt.Sprintf("wgtb%d", os.Getpid()%100000)
	confA := fmt.Sprintf("[Interface]\nPrivateKey = %s\nAddress = 198.18.250.1/32, fd00:250::1/128\nListenPort = 51820\n\n"+
		"[Peer]\nPublicKey = %s\nAllowedIPs = 198.18.250.2/32, fd00:250::2/128\n", ka, kb.PublicKey())
	confB := fmt.Sprintf("[Interface]\nPrivateKey = %s\nAddress = 198.18.250.2/32, fd00:250::2/128\n\n"+
		"[Peer]\nPublicKey = %s\nEndpoint = %s\nAllowedIPs = 198.18.250.1/32, fd00:250::1/128\n", kb, ka.PublicKey(),
		netip.AddrPortFrom(n.Addr("client", "router", false), 51820))
	a, err := n.Node("client").WGQuickUp(ctx, ifA, []byte(confA))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Node("server").WGQuickUp(ctx, ifB, []byte(confB)); err != nil {
		t.Fatal(err)
	}
	if pid, err := a.Pid(); err != nil || pid <= 0 {
		t.Fatalf("Pid = %d, %v", pid, err)
	}
	families(t, func(t *testing.T, v6 bool) {
		srv := netip.AddrPortFrom(netip.MustParseAddr("198.18.250.1"), 7007)
		if v6 {
			srv = netip.AddrPortFrom(netip.MustParseAddr("fd00:250::1"), 7007)
		}
		tcpEcho(t, n.Node("client"), srv)
		if err := tcpRoundTrip(n.Node("server"), srv, 10*time.Second); err != nil {
			t.Fatalf("server -> WireGuard -> client: %v", err)
		}
	})
	dump, err := a.Show(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dump, kb.PublicKey().String()) {
		t.Fatalf("wg show does not list the peer:\n%s", dump)
	}
}
