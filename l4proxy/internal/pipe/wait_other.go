//go:build !linux

package pipe

import "io"

// newReadWaiter returns src's own waiter if it has one (a tunnel stream
// with WaitReadable). Sockets get none outside Linux: their direction keeps
// a small buffer while idle.
func newReadWaiter(src io.Reader) readWaiter {
	if w, ok := src.(readWaiter); ok {
		return w
	}
	return nil
}
