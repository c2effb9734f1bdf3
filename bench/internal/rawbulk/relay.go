package rawbulk

import (
	"io"
	"net"
	"sync"
)

// RelayBufSize is the copy buffer of each relay direction: the size the
// tunnel's copy loop grows to on a bulk stream (BigBufSize in
// l4proxy/internal/pipe), so that the raw relays and the tunnel move the
// same amount per read and write.
const RelayBufSize = 256 << 10

// bufs holds the copy buffers of finished relays, so that a relay per
// short connection (the connection-rate and echo rows) does not allocate
// and collect half a MiB per connection: the least a relay must do.
var bufs = sync.Pool{New: func() any { b := make([]byte, RelayBufSize); return &b }}

// Relay copies both ways between a (a TCP connection) and b (a QUIC
// stream or a TLS connection) until both directions ended, propagating
// EOF as a half-close (CloseWrite), then closes both. A read or write
// error ends both directions at once. It is the data path of the raw
// relay peers: the least a relay on top of the transport must do.
func Relay(a *net.TCPConn, b Stream, closeB func() error) {
	var wg sync.WaitGroup
	var once sync.Once
	abort := func() {
		once.Do(func() {
			_ = a.SetLinger(0)
			_ = a.Close()
			_ = closeB()
		})
	}
	cp := func(dst, src Stream) {
		defer wg.Done()
		bp := bufs.Get().(*[]byte)
		defer bufs.Put(bp)
		buf := *bp
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					abort()
					return
				}
			}
			if err == io.EOF {
				if dst.CloseWrite() != nil {
					abort()
				}
				return
			}
			if err != nil {
				abort()
				return
			}
		}
	}
	wg.Add(2)
	go cp(b, a)
	go cp(a, b)
	wg.Wait()
	_ = a.Close()
	_ = closeB()
}

// ServeTCP accepts TCP connections on ln and hands each to relay in its own
// goroutine until ln fails.
func ServeTCP(ln net.Listener, relay func(*net.TCPConn)) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go relay(c.(*net.TCPConn))
	}
}
