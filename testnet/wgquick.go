package testnet

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// WireGuardGoPkg is the stock userspace WireGuard implementation, built
// from the module version go.mod requires.
const WireGuardGoPkg = "golang.zx2c4.com/wireguard"

// WireGuardGo builds the stock wireguard-go binary (cached per test
// binary) and returns its path.
func WireGuardGo() (string, error) { return BuildBinary(WireGuardGoPkg) }

// WGQuickAvailable reports why stock WireGuard clients cannot run here:
// wg and wg-quick come from Debian's wireguard-tools (make deps).
func WGQuickAvailable() error {
	for _, c := range []string{"wg", "wg-quick"} {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Errorf("%s not found (apt-get install wireguard-tools, or make deps)", c)
		}
	}
	return nil
}

// WGQuick is a stock WireGuard client in a node: the wireguard-go daemon,
// configured by wg-quick (which sets the keys and peers with wg, the
// addresses, MTU and a route per AllowedIPs with ip) from a standard
// wg-quick configuration file.
type WGQuick struct {
	Node  *Node
	Iface string
	Conf  string // path of the configuration file
}

// WGQuickUp writes conf to a file named after iface (wg-quick takes the
// interface name from it) and runs `wg-quick up` in node, with
// WG_QUICK_USERSPACE_IMPLEMENTATION pointing at the stock wireguard-go
// (this kernel has no WireGuard). iface must be unique on the machine
// while it lives: wireguard-go's control socket /var/run/wireguard/IFACE.sock
// is not per namespace. The net runs `wg-quick down` at Close; killing the
// namespace's processes would leave the socket behind.
func (node *Node) WGQuickUp(ctx context.Context, iface string, conf []byte) (*WGQuick, error) {
	if err := WGQuickAvailable(); err != nil {
		return nil, err
	}
	if len(iface) > 15 {
		return nil, fmt.Errorf("interface name %q longer than 15 bytes", iface)
	}
	wggo, err := WireGuardGo()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "onramp-wgquick-")
	if err != nil {
		return nil, err
	}
	w := &WGQuick{Node: node, Iface: iface, Conf: filepath.Join(dir, iface+".conf")}
	if err := os.WriteFile(w.Conf, conf, 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	node.net.OnClose(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := w.Down(ctx)
		os.RemoveAll(dir)
		return err
	})
	cmd := node.Command(ctx, "wg-quick", "up", w.Conf)
	cmd.Env = append(os.Environ(), "WG_QUICK_USERSPACE_IMPLEMENTATION="+wggo)
	out, err := cmd.CombinedOutput()
	node.net.logf("[%s] wg-quick up %s\n%s", node.Name, w.Conf, out)
	if err != nil {
		return nil, fmt.Errorf("wg-quick up %s in %s: %w: %s", iface, node.Name, err, strings.TrimSpace(string(out)))
	}
	return w, nil
}

// Down runs `wg-quick down`, which deletes the interface; wireguard-go
// exits with it. Down on an interface already gone is not an error.
func (w *WGQuick) Down(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join("/var/run/wireguard", w.Iface+".sock")); err != nil {
		return nil
	}
	out, err := w.Node.Command(ctx, "wg-quick", "down", w.Conf).CombinedOutput()
	if err != nil {
		return fmt.Errorf("wg-quick down %s: %w: %s", w.Iface, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Show returns `wg show IFACE dump`: one line for the interface, one per
// peer (public key, preshared key, endpoint, allowed ips, latest handshake,
// rx bytes, tx bytes, keepalive), tab separated.
func (w *WGQuick) Show(ctx context.Context) (string, error) {
	out, err := w.Node.Command(ctx, "wg", "show", w.Iface, "dump").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("wg show %s: %w: %s", w.Iface, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Pid returns the PID of the wireguard-go daemon serving the interface
// (wg-quick starts it and it detaches), found by its command line.
func (w *WGQuick) Pid() (int, error) {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + p.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) == 2 && args[1] == w.Iface && filepath.Base(args[0]) == filepath.Base(WireGuardGoPkg) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no wireguard-go process serves %s", w.Iface)
}
