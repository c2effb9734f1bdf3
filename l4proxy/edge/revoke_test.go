package edge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l4proxy/tunnel"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// regConn is an authenticated connector connection that serves nothing:
// enough to register, be picked and be closed.
type regConn struct {
	tunnelID   [16]byte
	generation uint64
	ctx        context.Context
	cancel     context.CancelCauseFunc
	code       atomic.Uint64 // the CloseWithError code
}

func newRegConn(id [16]byte, generation uint64) *regConn {
	c := &regConn{tunnelID: id, generation: generation}
	c.ctx, c.cancel = context.WithCancelCause(context.Background())
	return c
}

var errRegConn = errors.New("fake connection")

func (c *regConn) OpenStream(context.Context, *tunnel.Request) (tunnel.Stream, error) {
	return nil, errRegConn
}
func (c *regConn) AcceptStream(context.Context) (tunnel.Stream, *tunnel.Request, error) {
	return nil, nil, errRegConn
}
func (c *regConn) SendDatagram([]byte) error { return nil }
func (c *regConn) ReceiveDatagram(ctx context.Context, _ []byte) (int, error) {
	select {
	case <-ctx.Done():
	case <-c.ctx.Done():
	}
	return 0, net.ErrClosed
}
func (c *regConn) Protocol() string              { return "http2" }
func (c *regConn) RemoteAddr() net.Addr          { return &net.TCPAddr{IP: net.IPv4(198, 18, 0, 1), Port: 1} }
func (c *regConn) ConnectorID() [16]byte         { return [16]byte{0xc0} }
func (c *regConn) TunnelID() [16]byte            { return c.tunnelID }
func (c *regConn) Generation() uint64            { return c.generation }
func (c *regConn) Context() context.Context      { return c.ctx }
func (c *regConn) Drain() error                  { return nil }
func (c *regConn) AdvertiseEdges([]string) error { return nil }
func (c *regConn) Draining() bool                { return false }
func (c *regConn) Stats() tunnel.TransportStats  { return tunnel.TransportStats{} }
func (c *regConn) CloseWithError(code uint64, msg string) error {
	c.code.CompareAndSwap(0, code|1<<63)
	c.cancel(fmt.Errorf("closed with %d: %s", code, msg))
	return nil
}

// closedWith returns the code the connection was closed with, or false if
// it is still open.
func (c *regConn) closedWith() (uint64, bool) {
	v := c.code.Load()
	return v &^ (1 << 63), v != 0
}

// regListener hands out the connections the test sends on conns, as a
// tunnel listener does once they authenticated.
type regListener struct{ conns chan tunnel.Conn }

func (l *regListener) Accept(ctx context.Context) (tunnel.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
func (l *regListener) Addr() net.Addr { return &net.TCPAddr{} }
func (l *regListener) Close() error   { return nil }

// regStore is the tunnel store as Admit sees it: tunnel ID to the
// generation of its secret.
type regStore struct {
	mu   sync.Mutex
	gens map[[16]byte]uint64
}

func (st *regStore) set(id [16]byte, gen uint64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if gen == 0 {
		delete(st.gens, id)
	} else {
		st.gens[id] = gen
	}
}

func (st *regStore) admit(id [16]byte, gen uint64) tunnel.AuthReason {
	st.mu.Lock()
	defer st.mu.Unlock()
	cur, ok := st.gens[id]
	switch {
	case !ok:
		return tunnel.AuthTunnelDeleted
	case cur != gen:
		return tunnel.AuthRotated
	}
	return tunnel.AuthOK
}

type revokeRig struct {
	s     *Server
	st    *regStore
	ln    *regListener
	reg   *prometheus.Registry
	other [16]byte // another tunnel, whose connection must stay
	oc    *regConn
}

// newRevokeRig serves connectors from a fake listener with Admit on a fake
// store that holds tunnel id (and another tunnel, connected) at generation 1.
func newRevokeRig(t *testing.T, id [16]byte) *revokeRig {
	r := &revokeRig{st: &regStore{gens: map[[16]byte]uint64{id: 1}}, ln: &regListener{conns: make(chan tunnel.Conn)},
		reg: prometheus.NewRegistry(), other: [16]byte{0x07}}
	r.st.set(r.other, 1)
	r.s = NewServer(Options{Admit: r.st.admit, Registerer: r.reg})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.s.ServeConnectors(ctx, r.ln)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	r.oc = newRegConn(r.other, 1)
	r.ln.conns <- r.oc
	r.waitConns(t, r.other, 1)
	return r
}

// waitConns waits until the tunnel has n registered connections.
func (r *revokeRig) waitConns(t *testing.T, id [16]byte, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); len(r.s.liveConns(id)) != n; {
		if time.Now().After(deadline) {
			t.Fatalf("tunnel %x: %d connections, want %d", id[:1], len(r.s.liveConns(id)), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitClosed waits for c to be closed and returns the reason it was closed with.
func waitClosed(t *testing.T, c *regConn, what string) tunnel.AuthReason {
	t.Helper()
	select {
	case <-c.ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: the connection is still up", what)
	}
	code, _ := c.closedWith()
	if code <= tunnel.CloseAuthRefused {
		t.Fatalf("%s: closed with code %#x, want an auth reason", what, code)
	}
	return tunnel.AuthReason(code - tunnel.CloseAuthRefused)
}

func (r *revokeRig) revocations(reason, stage string) float64 {
	return testutil.ToFloat64(r.s.revocations.c.WithLabelValues(reason, stage))
}

// TestDeletedTunnelRegistrationRace plays hole 3 deterministically: the
// connection authenticated (it sits in the listener's accept queue, as an
// HTTP/2 connection does while its connector takes its time to answer the
// datagram stream), then the tunnel is deleted and its connections dropped,
// then the connection reaches registration. It must be refused there,
// with the reason; on the code before revocation generations it
// registered and stayed, serving the deleted tunnel's users.
func TestDeletedTunnelRegistrationRace(t *testing.T) {
	id := [16]byte{0x01}
	r := newRevokeRig(t, id)
	r.s.SetTunnels(map[string][16]byte{"victim": id})
	c := newRegConn(id, 1) // authenticated at generation 1

	r.st.set(id, 0)                       // edge tunnel delete: the store first,
	r.s.SetTunnels(map[string][16]byte{}) // then the names,
	if n := r.s.Revalidate(id); n != 0 {  // then the live connections (none yet)
		t.Fatalf("Revalidate closed %d connections, want 0", n)
	}
	r.ln.conns <- c // now it registers

	if reason := waitClosed(t, c, "connection of a deleted tunnel"); reason != tunnel.AuthTunnelDeleted {
		t.Errorf("closed for %v, want %v", reason, tunnel.AuthTunnelDeleted)
	}
	if n := len(r.s.liveConns(id)); n != 0 {
		t.Errorf("the deleted tunnel has %d registered connections", n)
	}
	if lc := r.s.pick(r.s.tunnelNamed("victim"), nil); lc != nil {
		t.Error("a user of the deleted tunnel's name is sent to a connection")
	}
	if v := r.revocations("tunnel_deleted", "registration"); v != 1 {
		t.Errorf("revocations{tunnel_deleted,registration} = %v, want 1", v)
	}
	if _, closed := r.oc.closedWith(); closed || len(r.s.liveConns(r.other)) != 1 {
		t.Error("the other tunnel's connection was touched")
	}
}

// TestRotateRevokes: after a rotation the connections of the old secret
// are closed ("token rotated"), live or still on their way to registration;
// a connection of the new secret registers; other tunnels are untouched.
func TestRotateRevokes(t *testing.T) {
	id := [16]byte{0x02}
	r := newRevokeRig(t, id)
	live := newRegConn(id, 1)
	r.ln.conns <- live
	r.waitConns(t, id, 1)
	late := newRegConn(id, 1) // authenticated with the old secret, not registered yet

	r.st.set(id, 2) // edge tunnel rotate
	if n := r.s.Revalidate(id); n != 1 {
		t.Errorf("Revalidate closed %d connections, want 1", n)
	}
	if reason := waitClosed(t, live, "live connection of the old secret"); reason != tunnel.AuthRotated {
		t.Errorf("live: closed for %v, want %v", reason, tunnel.AuthRotated)
	}
	r.ln.conns <- late
	if reason := waitClosed(t, late, "late connection of the old secret"); reason != tunnel.AuthRotated {
		t.Errorf("late: closed for %v, want %v", reason, tunnel.AuthRotated)
	}
	fresh := newRegConn(id, 2)
	r.ln.conns <- fresh
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if lcs := r.s.liveConns(id); len(lcs) == 1 && lcs[0].conn == fresh {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("registered: %d connections, want only the new secret's", len(r.s.liveConns(id)))
		}
	}
	if _, closed := fresh.closedWith(); closed {
		t.Error("the new secret's connection was closed")
	}
	if n := r.s.Revalidate(id); n != 0 {
		t.Errorf("a second Revalidate closed %d connections", n)
	}
	for _, stage := range []string{"live", "registration"} {
		if v := r.revocations("token_rotated", stage); v != 1 {
			t.Errorf("revocations{token_rotated,%s} = %v, want 1", stage, v)
		}
	}
	if _, closed := r.oc.closedWith(); closed {
		t.Error("the other tunnel's connection was closed")
	}
}

// TestRevokedNotPicked: a connection being revoked takes no new stream even
// before its transport is gone (HTTP/2 closes after telling the connector).
func TestRevokedNotPicked(t *testing.T) {
	id := [16]byte{0x03}
	r := newRevokeRig(t, id)
	c := &lingeringConn{regConn: newRegConn(id, 1)}
	r.ln.conns <- c
	r.waitConns(t, id, 1)
	te := r.s.entry(id)
	if r.s.pick(te, nil) == nil {
		t.Fatal("the connection is not picked before the rotation")
	}
	r.st.set(id, 2)
	r.s.Revalidate(id)
	if c.ctx.Err() != nil {
		t.Fatal("lingeringConn closed at once")
	}
	if r.s.pick(te, nil) != nil {
		t.Error("a revoked connection is still picked for new streams")
	}
}

// lingeringConn records an auth close but stays up, as an HTTP/2
// connection does for a moment while the connector reads why.
type lingeringConn struct{ *regConn }

func (c *lingeringConn) CloseWithError(code uint64, msg string) error {
	if code > tunnel.CloseAuthRefused {
		c.code.CompareAndSwap(0, code|1<<63)
		return nil
	}
	return c.regConn.CloseWithError(code, msg)
}

// TestRegistrationRaceStress registers connections of one tunnel from many
// goroutines while the tunnel is deleted and revalidated: whatever the
// interleaving, every connection ends up closed.
func TestRegistrationRaceStress(t *testing.T) {
	id := [16]byte{0x04}
	for round := range 20 {
		r := newRevokeRig(t, id)
		const n = 50
		conns := make([]*regConn, n)
		var wg sync.WaitGroup
		for i := range conns {
			conns[i] = newRegConn(id, 1)
			wg.Go(func() { r.ln.conns <- conns[i] })
			if i == round*n/20 {
				r.st.set(id, 0)
				r.s.Revalidate(id)
			}
		}
		wg.Wait()
		for i, c := range conns {
			waitClosed(t, c, fmt.Sprintf("round %d, connection %d", round, i))
		}
		r.waitConns(t, id, 0)
	}
}

// TestOnConnected: Options.OnConnected hears of each connection that
// registered, with its remote address, and of none that was refused.
func TestOnConnected(t *testing.T) {
	id := [16]byte{0x02}
	st := &regStore{gens: map[[16]byte]uint64{id: 1}}
	got := make(chan net.Addr, 4)
	s := NewServer(Options{Admit: st.admit, Registerer: prometheus.NewRegistry(), OnConnected: func(a net.Addr) { got <- a }})
	ln := &regListener{conns: make(chan tunnel.Conn)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.ServeConnectors(ctx, ln)
	}()
	defer func() {
		cancel()
		<-done
	}()
	refused := newRegConn([16]byte{0x03}, 1) // no such tunnel
	ln.conns <- refused
	waitClosed(t, refused, "a connection of an unknown tunnel")
	ln.conns <- newRegConn(id, 1)
	select {
	case a := <-got:
		if a.String() != "198.18.0.1:1" {
			t.Errorf("OnConnected(%v), want the connection's remote address 198.18.0.1:1", a)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OnConnected was not called for a registered connection")
	}
	select {
	case a := <-got:
		t.Errorf("OnConnected(%v) called again: the refused connection was reported", a)
	case <-time.After(50 * time.Millisecond):
	}
}
