//go:build !linux

package relay

import (
	"context"
	"net"
)

// Without splice(2) the splice strategy copies.
func (r *run) spliceLoop(dst, src net.Conn, c Counter) (int64, error, bool) {
	return r.copyLoop(dst, src, c)
}

type pipePool struct{}

func newPipePool(size, max int) *pipePool { return &pipePool{} }
func (pp *pipePool) close()               {}
func (pp *pipePool) stats() Stats         { return Stats{} }

func (e *Engine) startParked(ctx context.Context, a, b net.Conn, o Options, done func(Result)) bool {
	return false
}
