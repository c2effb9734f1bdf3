package testnet_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/onramp-net/onramp/testnet"
)

// TestQUICConnectorRebind: the connector's host sits behind a NAT
// (nftables masquerade to random ports) that forgets its mappings in the
// middle of a download through the tunnel, as a home router or a carrier
// NAT does: every connection of the connector reaches the edge from a new
// source port. The download completes, the connector keeps its tunnel
// connections (no new QUIC handshake reaches the edge), and the edge's
// steering program hands every datagram to its socket by connection ID:
// each connection stays on its Transport.
func TestQUICConnectorRebind(t *testing.T) {
	if _, err := exec.LookPath("conntrack"); err != nil {
		testnet.SkipOrFail(t, "conntrack (make deps installs it): %v", err)
	}
	w := newTunnelWorld(t)
	conn := w.n.Node("conn")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nat := fmt.Sprintf(`table ip onramp_rebind {
	chain post {
		type nat hook postrouting priority srcnat;
		udp dport %d masquerade to :40000-59999 random
	}
}
`, testnet.EdgeTunnelPort)
	rules := filepath.Join(t.TempDir(), "rebind.nft")
	if err := os.WriteFile(rules, []byte(nat), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := conn.Run(ctx, "nft", "-f", rules); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	w.connector("rebind", "quic", "")
	if !strings.Contains(w.rig.Edge.Output(), "quic steering: ") {
		t.Fatalf("the edge does not steer its QUIC sockets:\n%s", w.rig.Edge.Output())
	}
	ports := func() []string {
		t.Helper()
		out, err := conn.Run(ctx, "conntrack", "-L", "-p", "udp", "--orig-port-dst", fmt.Sprint(testnet.EdgeTunnelPort))
		if err != nil {
			t.Fatalf("conntrack -L: %v: %s", err, out)
		}
		// The reply direction's destination port is the one the NAT chose.
		var ps []string
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			f := regexp.MustCompile(`dport=(\d+)`).FindAllStringSubmatch(line, -1)
			if len(f) == 2 {
				ps = append(ps, f[1][1])
			}
		}
		sort.Strings(ps)
		return ps
	}
	steered := func() (byID, byHash float64) {
		t.Helper()
		m, err := w.rig.EdgeMetrics()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(m, "\n") {
			if !strings.HasPrefix(line, "onramp_edge_quic_steered_datagrams_total{") {
				continue
			}
			var v float64
			fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
			if strings.Contains(line, `by="conn_id"`) {
				byID += v
			} else {
				byHash += v
			}
		}
		return byID, byHash
	}
	before := ports()
	id0, hash0 := steered()

	// A download through the tunnel; the NAT forgets its mappings a
	// second in.
	done := make(chan error, 1)
	go func() {
		_, err := w.user.Download(w.addr(false, testnet.EdgeSourcePort), 512<<20)
		done <- err
	}()
	time.Sleep(time.Second)
	out, err := conn.Run(ctx, "conntrack", "-D", "-p", "udp", "--orig-port-dst", fmt.Sprint(testnet.EdgeTunnelPort))
	t.Logf("conntrack -D: %s", strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("conntrack -D: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the download across the rebind: %v", err)
	}
	after := ports()
	id1, hash1 := steered()
	t.Logf("NAT ports before %v, after %v; steered by connection ID %.0f, by hash %.0f", before, after, id1-id0, hash1-hash0)
	if len(before) == 0 || len(after) == 0 || strings.Join(before, ",") == strings.Join(after, ",") {
		t.Fatalf("the NAT's ports did not change: before %v, after %v", before, after)
	}
	if hash1 != hash0 {
		t.Errorf("%.0f datagrams went by hash during the download: a connection was made again or left its Transport", hash1-hash0)
	}
	if id1-id0 < 1000 {
		t.Errorf("only %.0f datagrams steered by connection ID during a 512 MiB download", id1-id0)
	}
}
