//go:build !linux

package relay

import (
	"context"
	"errors"
)

// sockmap is the sockmap strategy's state; it needs Linux and eBPF.
type sockmap struct{}

func newSockmap() (*sockmap, error) {
	return nil, errors.New("the sockmap strategy needs Linux with eBPF")
}

func (s *sockmap) close() error                                     { return nil }
func (s *sockmap) pairs() int                                       { return 0 }
func (s *sockmap) stats(st *Stats)                                  {}
func (s *sockmap) relay(ctx context.Context, r *run) (Result, bool) { return Result{}, false }
