// Command wgload is the harness's WireGuard load generator for the edge's
// steering scenarios, run by bench/cmd/bench in the client namespace: many
// WireGuard clients (stock wireguard-go devices, in memory, one UDP socket
// each) send small UDP packets through the edge to a connector subnet,
// whose connector is one more stock device here that counts what arrives.
// So the edge is the only onramp process on the path, and each client is
// one flow (one socket, one session) for the edge to steer.
//
//	wgload -clients DIR -sink site.yml -dst 198.18.130.2:9 -len 64 -d 5s
//
// DIR holds the clients' wg-quick configurations (*.conf, as `edge l3
// client add` prints them); site.yml is the connector's l3.yml (`edge l3
// connector add`). Once every client's packets reach the connector, its
// device closes and a socket that reads nothing takes its port: the edge
// goes on sending it the packets, and the load generator's CPU all goes
// to the clients. The edge's own counters say what it forwarded. It
// prints one JSON object on stdout: packets the clients handed their
// devices in the measured window, its length, and the process's CPU
// seconds in it.
//
// With -rebind N it then waits for a line on stdin, moves the first
// client (by file name) to a new UDP port, as a NAT that rebinds would,
// sends N packets from it and prints a second object: the client, its old
// and new port. The testnet reads the edge's counters in between.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/onramp-net/onramp/dataplane/packet"
	"github.com/onramp-net/onramp/l3router/l3config"
)

type result struct {
	Clients    int     `json:"clients"`
	Sent       uint64  `json:"sent"`
	Seconds    float64 `json:"seconds"`
	CPUSeconds float64 `json:"cpu_seconds"`
}

func main() {
	clients := flag.String("clients", "", "directory of the clients' wg-quick configurations (*.conf)")
	sink := flag.String("sink", "", "the connector's l3.yml: the device that receives")
	dst := flag.String("dst", "", "destination of the packets (ip:port) in the connector's subnet")
	size := flag.Int("len", 64, "UDP payload bytes")
	dur := flag.Duration("d", 5*time.Second, "measured duration")
	warm := flag.Duration("warmup", time.Second, "load before the measured window")
	rate := flag.Int("rate", 0, "packets a second per client (0: as fast as its device takes them)")
	rebind := flag.Int("rebind", 0, "after the load and a line on stdin: packets the first client sends from a new port")
	flag.Parse()
	if err := run(*clients, *sink, *dst, *size, *dur, *warm, *rate, *rebind); err != nil {
		fmt.Fprintln(os.Stderr, "wgload:", err)
		os.Exit(1)
	}
}

// peer is one stock wireguard-go device and its channel TUN.
type peer struct {
	name string
	dev  *device.Device
	tun  *tuntest.ChannelTUN
	addr netip.Addr
}

func newPeer(name string, key, edge l3config.Key, endpoint string, addr netip.Addr) (*peer, error) {
	ct := tuntest.NewChannelTUN()
	dev := device.NewDevice(ct.TUN(), conn.NewDefaultBind(), device.NewLogger(device.LogLevelError, name+": "))
	cfg := fmt.Sprintf("private_key=%s\nlisten_port=0\npublic_key=%s\nendpoint=%s\nallowed_ip=0.0.0.0/0\npersistent_keepalive_interval=25\n",
		key.Hex(), edge.Hex(), endpoint)
	if err := dev.IpcSet(cfg); err != nil {
		dev.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := dev.Up(); err != nil {
		dev.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &peer{dev: dev, tun: ct, addr: addr}, nil
}

// datagram returns an IPv4 UDP packet from src to dst with size bytes of
// payload, the client's index in its first bytes.
func datagram(src netip.Addr, dst netip.AddrPort, size, index int) ([]byte, error) {
	b, err := packet.AppendIPv4(nil, &packet.IPv4Header{TTL: 64, Protocol: packet.ProtoUDP, Src: src, Dst: dst.Addr()}, 8+size)
	if err != nil {
		return nil, err
	}
	start := len(b)
	if b, err = packet.AppendUDP(b, &packet.UDPHeader{SrcPort: 40000, DstPort: dst.Port()}, size); err != nil {
		return nil, err
	}
	payload := make([]byte, size)
	binary.BigEndian.PutUint32(payload, uint32(index))
	b = append(b, payload...)
	return b, packet.PutUDPChecksum(b[start:], packet.PseudoHeaderSum(src, dst.Addr(), packet.ProtoUDP, uint32(8+size)))
}

// listenPort returns the UDP port of a wireguard-go device.
func listenPort(d *device.Device) (int, error) {
	s, err := d.IpcGet()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(line, "listen_port="); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, errors.New("the connector's device has no listen port")
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// rebound is what -rebind prints.
type rebound struct {
	Client string `json:"client"`
	From   int    `json:"from"`
	To     int    `json:"to"`
	Sent   int    `json:"sent"`
}

func run(dir, sinkPath, dstArg string, size int, dur, warm time.Duration, rate, rebind int) error {
	if dir == "" || sinkPath == "" || dstArg == "" {
		return errors.New("-clients, -sink and -dst are required")
	}
	dst, err := netip.ParseAddrPort(dstArg)
	if err != nil {
		return fmt.Errorf("-dst: %w", err)
	}
	site, err := l3config.LoadConnector(sinkPath)
	if err != nil {
		return err
	}
	confs, err := filepath.Glob(filepath.Join(dir, "*.conf"))
	if err != nil || len(confs) == 0 {
		return fmt.Errorf("no *.conf in %s", dir)
	}
	sink, err := newPeer("sink", site.PrivateKey, site.Edge.PublicKey, site.Edge.Endpoint, netip.Addr{})
	if err != nil {
		return err
	}
	defer sink.dev.Close()
	var clients []*peer
	defer func() {
		for _, c := range clients {
			c.dev.Close()
		}
	}()
	for _, f := range confs {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		c, err := l3config.ParseClient(b)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if len(c.Addresses) == 0 {
			return fmt.Errorf("%s: no address", f)
		}
		p, err := newPeer(strings.TrimSuffix(filepath.Base(f), ".conf"), c.PrivateKey, c.EdgePublicKey, c.Endpoint, c.Addresses[0].Addr())
		if err != nil {
			return err
		}
		p.name = strings.TrimSuffix(filepath.Base(f), ".conf")
		clients = append(clients, p)
	}

	// The sink notes which clients' packets arrive.
	seen := make([]atomic.Bool, len(clients))
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case p := <-sink.tun.Inbound:
				if len(p) >= 28+4 {
					if i := int(binary.BigEndian.Uint32(p[28:])); i < len(seen) {
						seen[i].Store(true)
					}
				}
			case <-stop:
				return
			}
		}
	}()
	// Every client reaches the sink before the load: its handshake done.
	pkts := make([][]byte, len(clients))
	for i, c := range clients {
		if pkts[i], err = datagram(c.addr, dst, size, i); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		all := true
		for i, c := range clients {
			if !seen[i].Load() {
				all = false
				c.tun.Outbound <- pkts[i]
			}
		}
		if all {
			break
		}
		if time.Now().After(deadline) {
			n := 0
			for i := range seen {
				if seen[i].Load() {
					n++
				}
			}
			return fmt.Errorf("%d of %d clients reached the sink in 30 s", n, len(clients))
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The connector's device goes; a socket that reads nothing holds its
	// port (the kernel drops what overflows it).
	port, err := listenPort(sink.dev)
	if err != nil {
		return err
	}
	close(stop)
	sink.dev.Close()
	hold, err := net.ListenUDP("udp4", &net.UDPAddr{Port: port})
	if err != nil {
		return fmt.Errorf("hold the connector's port %d: %w", port, err)
	}
	defer hold.Close()

	// The load: each client sends as fast as its device takes packets.
	var sent atomic.Uint64
	var wg sync.WaitGroup
	done := make(chan struct{})
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if rate > 0 { // rate/100 every 10 ms
				tick := time.NewTicker(10 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-tick.C:
						for range max(1, rate/100) {
							c.tun.Outbound <- pkts[i]
							sent.Add(1)
						}
					case <-done:
						return
					}
				}
			}
			for {
				select {
				case c.tun.Outbound <- pkts[i]:
					sent.Add(1)
				case <-done:
					return
				}
			}
		}()
	}
	time.Sleep(warm)
	s0, c0, t0 := sent.Load(), cpuSeconds(), time.Now()
	time.Sleep(dur)
	s1, c1, t1 := sent.Load(), cpuSeconds(), time.Now()
	close(done)
	wg.Wait()
	res := result{Clients: len(clients), Sent: s1 - s0, Seconds: t1.Sub(t0).Seconds(), CPUSeconds: c1 - c0}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil || rebind <= 0 {
		return err
	}
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return fmt.Errorf("-rebind: waiting for a line on stdin: %w", err)
	}
	c := clients[0]
	from, err := listenPort(c.dev)
	if err != nil {
		return err
	}
	if err := c.dev.IpcSet("listen_port=0\n"); err != nil {
		return fmt.Errorf("-rebind: %w", err)
	}
	to, err := listenPort(c.dev)
	if err != nil {
		return err
	}
	if to == from {
		return fmt.Errorf("-rebind: the client kept port %d", from)
	}
	for range rebind {
		c.tun.Outbound <- pkts[0]
		time.Sleep(time.Millisecond) // paced: the edge's counters, not a queue, should see them
	}
	time.Sleep(500 * time.Millisecond)
	return json.NewEncoder(os.Stdout).Encode(rebound{Client: c.name, From: from, To: to, Sent: rebind})
}
