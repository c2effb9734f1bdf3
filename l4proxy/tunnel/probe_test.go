package tunnel

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// TestProbe probes real listeners: the QUIC and the HTTP/2 handshakes
// complete with the right pin and fail with ErrPinMismatch with another;
// the HTTP/2 probe reads the edge's clock; neither probe joins the
// tunnel: the listeners accept no connection and count the attempt as
// an authentication failure.
func TestProbe(t *testing.T) {
	cert, pin := edgeCert(t)
	var mu sync.Mutex
	var failures []AuthReason
	cfg := testConfig()
	cfg.OnAuthFailure = func(r AuthReason, _ net.Addr) {
		mu.Lock()
		failures = append(failures, r)
		mu.Unlock()
	}
	auth := StaticAuthenticator{}
	qln, err := ListenQUIC("127.0.0.1:0", cert, auth, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer qln.Close()
	hln, err := ListenHTTP2("127.0.0.1:0", cert, auth, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer hln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	q, err := ProbeQUIC(ctx, qln.Addr().String(), pin)
	if err != nil || q.Handshake <= 0 {
		t.Fatalf("ProbeQUIC: %+v, %v", q, err)
	}
	before := time.Now()
	h, err := ProbeHTTP2(ctx, hln.Addr().String(), pin)
	if err != nil {
		t.Fatalf("ProbeHTTP2: %v", err)
	}
	if h.EdgeTime.Before(before.Add(-time.Second)) || h.EdgeTime.After(h.Received) || h.Received.Sub(h.EdgeTime) > time.Second {
		t.Errorf("edge time %v, received %v (probe began %v): want the edge's clock, this process's", h.EdgeTime, h.Received, before)
	}

	var other [32]byte
	other[0] = 1
	if _, err := ProbeQUIC(ctx, qln.Addr().String(), other); !errors.Is(err, ErrPinMismatch) {
		t.Errorf("ProbeQUIC with another pin: %v; want ErrPinMismatch", err)
	}
	if _, err := ProbeHTTP2(ctx, hln.Addr().String(), other); !errors.Is(err, ErrPinMismatch) {
		t.Errorf("ProbeHTTP2 with another pin: %v; want ErrPinMismatch", err)
	}

	// Nothing was accepted as a connector.
	for _, ln := range []Listener{qln, hln} {
		actx, acancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		if c, err := ln.Accept(actx); err == nil {
			t.Errorf("%v accepted a connection from a probe", c.RemoteAddr())
		}
		acancel()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(failures)
		mu.Unlock()
		if n >= 4 || time.Now().After(deadline) {
			if n < 2 {
				t.Errorf("%d authentication failures counted for 4 probes", n)
			}
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestProbeTimeout: nothing answers on UDP, the QUIC probe gives up when
// its context ends.
func TestProbeTimeout(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close() // a socket that reads nothing: no ICMP, no answer
	_, pin := edgeCert(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := ProbeQUIC(ctx, pc.LocalAddr().String(), pin); err == nil {
		t.Fatal("ProbeQUIC of a silent port succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("ProbeQUIC took %v with a 300 ms context", d)
	}
}
