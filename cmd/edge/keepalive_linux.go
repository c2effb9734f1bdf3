package main

import (
	"net"
	"syscall"
)

// keepAliveOnListener sets TCP keep-alive on a listening socket as Go
// sets it on each accepted connection by default (probes after 15 s idle,
// every 15 s, 9 of them): Linux copies the settings to every connection
// accepted from it, so the edge need not make four setsockopt calls per
// user connection. The caller's ListenConfig turns Go's own setting off
// (KeepAlive: -1).
func keepAliveOnListener(lc *net.ListenConfig) {
	lc.KeepAlive = -1
	lc.Control = func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			for _, o := range [...]struct{ level, opt, v int }{
				{syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
				{syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, 15},
				{syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, 15},
				{syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, 9},
			} {
				if serr == nil {
					serr = syscall.SetsockoptInt(int(fd), o.level, o.opt, o.v)
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
}
