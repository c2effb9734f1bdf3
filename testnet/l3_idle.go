package testnet

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/onramp-net/onramp/l3router"
	"github.com/onramp-net/onramp/l3router/hub"
	"github.com/onramp-net/onramp/l3router/l3config"
	"github.com/onramp-net/onramp/l4proxy/store"
)

// Worlds with thousands of L3 clients that never connect: the edge's
// store filled before it starts, a pool wide enough for them, and a LAN
// host sending to each.

// StartL3WorldPrepared is [StartL3World] with the given IPv4 client pool
// (pool4; the LAN hosts of the L3 topology route only L3Pool4 through
// their connector host, so a test with another pool adds that route) and
// prepare run on the edge's data directory before the edge starts.
func StartL3WorldPrepared(ctx context.Context, n *Net, dir string, pool4 netip.Prefix, prepare func(data string) error) (*L3World, error) {
	w, err := newL3World(ctx, n, dir)
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "edge-data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	if err := prepare(data); err != nil {
		return nil, fmt.Errorf("prepare the edge's data: %w", err)
	}
	y := L3EdgeYAML(data, "")
	pools := fmt.Sprintf("pools: {ipv4: %s,", L3Pool4)
	if !strings.Contains(y, pools) {
		return nil, errors.New("testnet: L3EdgeYAML has no pools line to change")
	}
	y = strings.Replace(y, pools, fmt.Sprintf("pools: {ipv4: %s,", pool4), 1)
	w.EdgeConfig = filepath.Join(dir, "edge.yml")
	if err := os.WriteFile(w.EdgeConfig, []byte(y), 0o644); err != nil {
		return nil, err
	}
	// The edge loads every client before it answers.
	if err := w.startEdge(ctx, data, 4*l3EdgeStartupWait); err != nil {
		return nil, err
	}
	return w, nil
}

// AddL3ClientsOffline records count clients, named prefix0, prefix1, ...,
// each with a public key of its own whose private key nobody has (as
// `edge l3 client add --public-key` with a user's key does), in the store
// of the stopped edge whose data directory is data, with the pools the
// edge will have. It returns their virtual IPv4 addresses. All are added
// in one transaction (hub.Store.AddMany): one by one, each add reads every
// record before it, and 10,000 would take minutes.
func AddL3ClientsOffline(data string, pool4, pool6 netip.Prefix, prefix string, count int) ([]netip.Addr, error) {
	st, err := store.Open(filepath.Join(data, "edge.db"))
	if err != nil {
		return nil, err
	}
	defer st.Close()
	s, err := hub.OpenStore(st.Registry(), hub.Pools{IPv4: pool4, IPv6: pool6}, 0)
	if err != nil {
		return nil, err
	}
	ps := make([]hub.Peer, count)
	for i := range ps {
		var k l3config.Key
		rand.Read(k[:])
		ps[i] = hub.Peer{Name: fmt.Sprint(prefix, i), Kind: l3router.KindClient, PublicKey: k}
	}
	added, err := s.AddMany(ps)
	if err != nil {
		return nil, err
	}
	addrs := make([]netip.Addr, len(added))
	for i, p := range added {
		addrs[i] = p.Address4
	}
	return addrs, nil
}

// UDPSpray sends UDP datagrams from a node to many addresses in turn.
type UDPSpray struct {
	sent, errs atomic.Int64
	elapsed    atomic.Int64 // ns, once done
	lastErr    atomic.Pointer[error]
	to         int
	stop, done chan struct{}
}

// StartUDPSpray sends from node datagrams of size bytes (UDP payload) to
// port on each of addrs in turn, rate a second (in bursts every
// millisecond), for at most d: a LAN host sending to every client of the
// L3 on-ramp, say.
func (node *Node) StartUDPSpray(addrs []netip.Addr, port uint16, size, rate int, d time.Duration) (*UDPSpray, error) {
	for _, a := range addrs {
		if !Allowed(a) {
			return nil, fmt.Errorf("testnet: udp spray: %v is outside the test ranges", a)
		}
	}
	var c *net.UDPConn
	if err := node.Do(func() (err error) {
		c, err = net.ListenUDP("udp", nil)
		return err
	}); err != nil {
		return nil, fmt.Errorf("testnet: udp spray: %w", err)
	}
	s := &UDPSpray{to: len(addrs), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer c.Close()
		msg := make([]byte, size)
		copy(msg, "onramp testnet spray")
		perTick := max(1, rate/1000)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		start := time.Now()
		defer func() { s.elapsed.Store(int64(time.Since(start))) }()
		for i := 0; time.Since(start) < d; {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			for range perTick {
				if _, err := c.WriteToUDPAddrPort(msg, netip.AddrPortFrom(addrs[i%len(addrs)], port)); err != nil {
					s.errs.Add(1)
					s.lastErr.Store(&err)
				} else {
					s.sent.Add(1)
				}
				i++
			}
		}
	}()
	return s, nil
}

// Stop ends the spray early and waits for it; Wait waits for its end.
func (s *UDPSpray) Stop() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// Wait waits until the spray has run its time.
func (s *UDPSpray) Wait() { <-s.done }

// Sent returns the datagrams sent so far.
func (s *UDPSpray) Sent() int64 { return s.sent.Load() }

// String reports the count and rate.
func (s *UDPSpray) String() string {
	str := fmt.Sprintf("UDP spray to %d addresses: %d datagrams sent", s.to, s.sent.Load())
	if el := time.Duration(s.elapsed.Load()); el > 0 {
		str += fmt.Sprintf(" in %v (%.0f/s)", el.Round(time.Millisecond), float64(s.sent.Load())/el.Seconds())
	}
	if n := s.errs.Load(); n > 0 {
		str += fmt.Sprintf("; %d send errors, last %v", n, *s.lastErr.Load())
	}
	return str
}
