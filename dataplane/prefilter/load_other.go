//go:build !linux

package prefilter

import (
	"errors"
	"net/netip"
)

// XDP is Linux's: elsewhere Load fails and the rest builds, so that the
// binaries do (the edge then runs without the pre-filter and says so).

var errUnsupported = errors.New("prefilter: XDP runs on Linux only")

// Filter is the loaded pre-filter (Linux only).
type Filter struct{}

// Load fails: XDP runs on Linux only.
func Load(Config) (*Filter, error) { return nil, errUnsupported }

// Attach fails: XDP runs on Linux only.
func (*Filter) Attach(string) error { return errUnsupported }

// Mode returns "": nothing is attached.
func (*Filter) Mode(string) string { return "" }

// Run fails: XDP runs on Linux only.
func (*Filter) Run([]byte) (bool, error) { return false, errUnsupported }

// Prove fails: XDP runs on Linux only.
func (*Filter) Prove(netip.Addr) error { return errUnsupported }

// Proven reports false.
func (*Filter) Proven(netip.Addr) bool { return false }

// Counts returns nothing.
func (*Filter) Counts() ([NumReasons]uint64, error) { return [NumReasons]uint64{}, errUnsupported }

// Close does nothing.
func (*Filter) Close() error { return nil }
