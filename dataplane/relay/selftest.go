package relay

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// selfTestBytes is how much the self-test relays each way.
const selfTestBytes = 4 << 20

// selfTest relays selfTestBytes each way over loopback with strategy s
// and checks the bytes and the half-close both ways, within a few seconds.
func (e *Engine) selfTest(s Strategy) error {
	saved := e.strategy
	e.strategy = s
	defer func() { e.strategy = saved }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	// client <-> a [relay] b <-> server
	origin, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer origin.Close()
	dial := func(addr net.Addr) (net.Conn, net.Conn, error) {
		accepted := make(chan net.Conn, 1)
		l := ln
		if addr == origin.Addr() {
			l = origin
		}
		go func() {
			c, err := l.Accept()
			if err != nil {
				accepted <- nil
				return
			}
			accepted <- c
		}()
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr.String())
		if err != nil {
			return nil, nil, err
		}
		s := <-accepted
		if s == nil {
			c.Close()
			return nil, nil, errors.New("accept failed")
		}
		return c, s, nil
	}
	client, a, err := dial(ln.Addr())
	if err != nil {
		return err
	}
	defer client.Close()
	b, server, err := dial(origin.Addr())
	if err != nil {
		a.Close()
		return err
	}
	defer server.Close()
	_ = client.SetDeadline(time.Now().Add(5 * time.Second))
	_ = server.SetDeadline(time.Now().Add(5 * time.Second))

	done := make(chan Result, 1)
	go func() { done <- e.Relay(ctx, a, b, Options{}) }()

	payload := make([]byte, selfTestBytes)
	for i := range payload {
		payload[i] = byte(i*7 + i>>11)
	}
	want := sha256.Sum256(payload)
	// Each end sends all of payload, half-closes, and reads until EOF.
	end := func(c net.Conn) error {
		errc := make(chan error, 1)
		go func() {
			_, err := c.Write(payload)
			if err == nil {
				err = c.(*net.TCPConn).CloseWrite()
			}
			errc <- err
		}()
		h := sha256.New()
		n, err := io.Copy(h, c)
		if err != nil {
			return err
		}
		if werr := <-errc; werr != nil {
			return werr
		}
		if n != selfTestBytes || !bytes.Equal(h.Sum(nil), want[:]) {
			return fmt.Errorf("received %d bytes that differ from the %d sent", n, selfTestBytes)
		}
		return nil
	}
	errs := make(chan error, 2)
	go func() { errs <- end(client) }()
	go func() { errs <- end(server) }()
	for range 2 {
		if err := <-errs; err != nil {
			cancel()
			<-done
			return err
		}
	}
	res := <-done
	if res.Err != nil {
		return res.Err
	}
	if res.AToB != selfTestBytes || res.BToA != selfTestBytes {
		return fmt.Errorf("counted %d and %d bytes, want %d each way", res.AToB, res.BToA, selfTestBytes)
	}
	return nil
}
