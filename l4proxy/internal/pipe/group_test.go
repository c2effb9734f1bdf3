package pipe

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

// groupListed says whether g is on the sweeper's list of groups.
func groupListed(g *Group) bool {
	groups.mu.Lock()
	defer groups.mu.Unlock()
	for h := groups.head; h != nil; h = h.next {
		if h == g {
			return true
		}
	}
	return false
}

// groupPair is proxyPair with the proxy started in g.
func groupPair(t *testing.T, g *Group, p *Proxy) (user, peer io.ReadWriteCloser, done chan Result) {
	t.Helper()
	return startPair(t, p, func(done func(Result)) { p.StartIn(g, done) })
}

// TestGroupAbortsOnContext: the context of a group ends every proxy in it
// with ErrStopped, however many, quiet or busy, and a proxy started in the
// group afterwards is aborted at once; the group leaves the sweeper's list
// once closed and empty, and not before.
func TestGroupAbortsOnContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	g := NewGroup(ctx)
	const n = 20
	var dones []chan Result
	var users []io.ReadWriteCloser
	for range n {
		user, _, done := groupPair(t, g, &Proxy{})
		dones = append(dones, done)
		users = append(users, user)
	}
	// One proxy moves bytes: the context ends it as well.
	if _, err := users[0].Write([]byte("busy")); err != nil {
		t.Fatal(err)
	}
	g.Close()
	if !groupListed(g) {
		t.Fatal("a closed group with proxies running left the sweeper's list")
	}
	cancel()
	for i, done := range dones {
		select {
		case res := <-done:
			if !errors.Is(res.Err, ErrStopped) {
				t.Fatalf("proxy %d: result %+v; want ErrStopped", i, res)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("proxy %d still running 5 s after its group's context ended", i)
		}
	}
	waitFor(t, "the group to leave the sweeper's list", func() bool { return !groupListed(g) })

	// A proxy started in a group whose context is done is aborted.
	g2 := NewGroup(ctx)
	defer g2.Close()
	_, _, done := groupPair(t, g2, &Proxy{})
	select {
	case res := <-done:
		if !errors.Is(res.Err, ErrStopped) {
			t.Fatalf("a proxy started after the context ended: result %+v; want ErrStopped", res)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a proxy started after its group's context ended still runs 5 s later")
	}
}

// TestGroupIdle: in one group, a proxy that reads nothing for its Idle is
// aborted (Result.Idle) within 1.5 Idle, and one whose user keeps sending
// is not; a proxy without Idle is never aborted for it.
func TestGroupIdle(t *testing.T) {
	g := NewGroup(t.Context())
	defer g.Close()
	const idle = 400 * time.Millisecond
	start := time.Now()
	_, _, quietDone := groupPair(t, g, &Proxy{Idle: idle})
	busyUser, busyPeer, busyDone := groupPair(t, g, &Proxy{Idle: idle})
	_, _, neverDone := groupPair(t, g, &Proxy{})

	tick := time.NewTicker(idle / 8)
	defer tick.Stop()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case res := <-quietDone:
			took := time.Since(start)
			if !res.Idle || !errors.Is(res.Err, ErrIdle) {
				t.Fatalf("the quiet proxy: result %+v; want the idle timeout", res)
			}
			if took < idle || took > idle*3/2+200*time.Millisecond {
				t.Errorf("the quiet proxy ended after %v; want between %v and 1.5 times that", took, idle)
			}
			// The busy one goes on for three more of its timeouts.
			for end := time.Now().Add(3 * idle); time.Now().Before(end); {
				<-tick.C
				if _, err := busyUser.Write([]byte("x")); err != nil {
					t.Fatal(err)
				}
				readN(t, busyPeer, 1)
			}
			select {
			case res := <-busyDone:
				t.Fatalf("the busy proxy ended: %+v", res)
			case res := <-neverDone:
				t.Fatalf("the proxy without an idle timeout ended: %+v", res)
			default:
			}
			return
		case <-tick.C:
			if _, err := busyUser.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			readN(t, busyPeer, 1)
		case <-timeout:
			t.Fatal("the quiet proxy still runs 5 s after its idle timeout")
		}
	}
}

// TestRunInLendsCaller: RunIn copies the prefix and the user's first
// bytes on the caller's goroutine, returns once the user is quiet (the
// direction parked), puts the prefix's pooled buffer back, and the proxy
// goes on without the caller: bytes both ways, then the orderly end.
func TestRunInLendsCaller(t *testing.T) {
	g := NewGroup(t.Context())
	defer g.Close()
	bp := GetBuf()
	*bp = append((*bp)[:0], "hello "...)
	p := &Proxy{Prefix: *bp, PrefixBuf: bp}
	returned := make(chan struct{})
	user, peer, done := startPair(t, p, func(done func(Result)) {
		go func() {
			p.RunIn(g, done)
			close(returned)
		}()
	})
	if _, err := user.Write([]byte("world")); err != nil {
		t.Fatal(err)
	}
	if got := string(readN(t, peer, 11)); got != "hello world" {
		t.Fatalf("peer read %q", got)
	}
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("RunIn did not return with the user quiet")
	}
	if p.PrefixBuf != nil {
		t.Fatal("the prefix's buffer was not put back")
	}
	// The proxy goes on: a parked direction wakes, the other copies.
	if _, err := user.Write([]byte("again")); err != nil {
		t.Fatal(err)
	}
	if got := string(readN(t, peer, 5)); got != "again" {
		t.Fatalf("peer read %q", got)
	}
	if _, err := peer.Write([]byte("back")); err != nil {
		t.Fatal(err)
	}
	if got := string(readN(t, user, 4)); got != "back" {
		t.Fatalf("user read %q", got)
	}
	user.Close()
	peer.Close()
	select {
	case r := <-done:
		if r.Err != nil || r.AToB != 16 || r.BToA != 4 {
			t.Fatalf("result %+v, want 16 and 4 bytes, no error", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the proxy did not end")
	}
}
