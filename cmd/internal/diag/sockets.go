package diag

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Socket is a bound socket of this network namespace, from /proc/net:
// a listening TCP socket or an unconnected UDP one.
type Socket struct {
	Network string // "tcp" or "udp"
	Addr    netip.AddrPort
	Inode   uint64
}

// ReadSockets lists the listening TCP and bound UDP sockets in the
// tables under procRoot/net (tcp, tcp6, udp, udp6).
func ReadSockets(procRoot string) ([]Socket, error) {
	var out []Socket
	for _, t := range []struct{ file, network, state string }{
		{"tcp", "tcp", "0A"}, {"tcp6", "tcp", "0A"}, // TCP_LISTEN
		{"udp", "udp", "07"}, {"udp6", "udp", "07"}, // TCP_CLOSE: bound, not connected
	} {
		f, err := os.Open(filepath.Join(procRoot, "net", t.file))
		if os.IsNotExist(err) {
			continue // no IPv6
		}
		if err != nil {
			return nil, err
		}
		socks, err := parseSockets(f, t.network, t.state)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name(), err)
		}
		out = append(out, socks...)
	}
	return out, nil
}

// parseSockets reads a /proc/net/{tcp,udp}[6] table.
func parseSockets(f *os.File, network, state string) ([]Socket, error) {
	var out []Socket
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != state {
			continue
		}
		ap, err := parseProcAddr(fields[1])
		if err != nil {
			return nil, err
		}
		inode, err := strconv.ParseUint(fields[9], 10, 64)
		if err != nil {
			return nil, err
		}
		out = append(out, Socket{Network: network, Addr: ap, Inode: inode})
	}
	return out, sc.Err()
}

// parseProcAddr parses "0100007F:1F90": the address as the kernel's
// 32-bit words in host (little-endian) order, the port big-endian hex.
func parseProcAddr(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	raw, err := hex.DecodeString(a)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	for i := 0; i < len(raw); i += 4 {
		binary.BigEndian.PutUint32(raw[i:], binary.LittleEndian.Uint32(raw[i:]))
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port %q", s)
	}
	ip, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
}

// Owner is a process holding a socket.
type Owner struct {
	PID  int
	Comm string
}

func (o Owner) String() string { return fmt.Sprintf("%s (pid %d)", o.Comm, o.PID) }

// SocketOwners finds the processes holding the sockets with the given
// inodes by their file descriptors under procRoot/[pid]/fd; sockets of
// processes this user may not look into are left out.
func SocketOwners(procRoot string, inodes map[uint64]bool) map[uint64][]Owner {
	out := map[uint64][]Owner{}
	dirs, _ := os.ReadDir(procRoot)
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		fdDir := filepath.Join(procRoot, d.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		var comm string
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			if err != nil || !strings.HasPrefix(link, "socket:[") {
				continue
			}
			inode, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]"), 10, 64)
			if err != nil || !inodes[inode] {
				continue
			}
			if comm == "" {
				b, _ := os.ReadFile(filepath.Join(procRoot, d.Name(), "comm"))
				comm = strings.TrimSpace(string(b))
			}
			owners := out[inode]
			if len(owners) == 0 || owners[len(owners)-1].PID != pid {
				out[inode] = append(owners, Owner{PID: pid, Comm: comm})
			}
		}
	}
	return out
}

// Matching returns the sockets of network bound where addr ("host:port",
// host empty or unspecified for all addresses) is: the same port, and
// the same address or a wildcard on either side.
func Matching(socks []Socket, network, addr string) ([]Socket, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("port %q: %w", port, err)
	}
	want, ipErr := netip.ParseAddr(host)
	var out []Socket
	for _, s := range socks {
		if s.Network != network || s.Addr.Port() != uint16(p) {
			continue
		}
		a := s.Addr.Addr()
		if host == "" || ipErr != nil || want.IsUnspecified() || a.IsUnspecified() || a == want.Unmap() {
			out = append(out, s)
		}
	}
	return out, nil
}

// Listener is a configured listening address to check.
type Listener struct {
	Name    string // what it is, e.g. "listen.tunnels (QUIC)"
	Network string // tcp or udp
	Addr    string
}

// Listeners checks that each configured address is bound, and by whom:
// edgePID is the running edge's process (0: none runs).
func Listeners(procRoot string, ls []Listener, edgePID int) []Result {
	socks, err := ReadSockets(procRoot)
	if err != nil {
		return []Result{{Status: Warn, Check: "listeners", Detail: fmt.Sprintf("cannot read the socket tables: %v.", err)}}
	}
	inodes := map[uint64]bool{}
	for _, s := range socks {
		inodes[s.Inode] = true
	}
	owners := SocketOwners(procRoot, inodes)
	var out []Result
	for _, l := range ls {
		out = append(out, listenerVerdict(l, socks, owners, edgePID))
	}
	return out
}

func listenerVerdict(l Listener, socks []Socket, owners map[uint64][]Owner, edgePID int) Result {
	res := Result{Check: fmt.Sprintf("listener %s %s://%s", l.Name, l.Network, l.Addr)}
	match, err := Matching(socks, l.Network, l.Addr)
	if err != nil {
		res.Status, res.Detail = Fail, fmt.Sprintf("not an address: %v.", err)
		return res
	}
	var edge, other []Owner
	unknown := 0
	for _, s := range match {
		held := owners[s.Inode]
		if len(held) == 0 {
			unknown++
		}
		for _, o := range held {
			if edgePID != 0 && o.PID == edgePID {
				edge = append(edge, o)
			} else {
				other = append(other, o)
			}
		}
	}
	switch {
	case len(other) > 0:
		res.Status = Fail
		res.Detail = fmt.Sprintf("bound by %s, not by the edge: the edge cannot listen there.", other[0])
		if edgePID == 0 {
			res.Detail = fmt.Sprintf("bound by %s: the edge cannot start while it holds the address.", other[0])
		}
		res.Fix = "stop that process, or change " + l.Name + " in edge.yml."
	case len(edge) > 0:
		res.Detail = fmt.Sprintf("bound by the running edge (pid %d).", edgePID)
		if len(edge) > 1 {
			res.Detail = fmt.Sprintf("bound by the running edge (pid %d), %d sockets (a SO_REUSEPORT group).", edgePID, len(edge))
		}
	case unknown > 0:
		res.Status = Warn
		res.Detail = "bound, by a process this user may not look at (run edge diag as root to see which)."
	case edgePID != 0:
		res.Status = Fail
		res.Detail = "not bound, although the edge runs: it runs with another edge.yml, or one from before this change."
		res.Fix = "restart the edge with this edge.yml, or give edge diag the --config it runs with."
	default:
		res.Status = Warn
		res.Detail = "not bound: the edge is not running."
		res.Fix = "start it (systemctl start onramp-edge); journalctl -u onramp-edge says why it stopped."
	}
	return res
}
