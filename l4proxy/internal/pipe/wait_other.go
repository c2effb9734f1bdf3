//go:build !linux

package pipe

import "io"

// readWaiter is Linux only: elsewhere every direction keeps a small buffer
// while idle.
type readWaiter struct{}

func newReadWaiter(io.Reader) *readWaiter { return nil }

func (*readWaiter) wait() error { return nil }
