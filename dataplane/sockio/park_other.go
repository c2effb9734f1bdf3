//go:build !linux

package sockio

import (
	"errors"
	"syscall"
)

// A Poller parks sockets without a goroutine; only on Linux (epoll).
type Poller struct{}

// A Parker parks one socket in a Poller.
type Parker struct{}

var errNoPoller = errors.New("sockio: no poller on this system")

// NewPoller fails: no epoll.
func NewPoller() (*Poller, error) { return nil, errNoPoller }

// SharedPoller is nil: no epoll.
func SharedPoller() *Poller { return nil }

func (p *Poller) Close() error                                      { return errNoPoller }
func (p *Poller) Parked() int64                                     { return 0 }
func (p *Poller) NewParker(rc syscall.RawConn, wake func()) *Parker { return &Parker{} }
func (k *Parker) Park() error                                       { return errNoPoller }
func (k *Parker) Unpark() bool                                      { return false }
