package l3router

import "errors"

// Sentinel errors of the control plane. Errors returned by this package wrap
// one of them together with the offending name or prefix; test with
// errors.Is. The data path never returns them: per-packet problems are
// counted as a [DropReason] and the packet dropped.
var (
	// ErrOverlap means a route overlaps a route of another peer.
	ErrOverlap = errors.New("route overlaps another peer's route")
	// ErrUnknownPeer means a name does not refer to a configured peer.
	ErrUnknownPeer = errors.New("unknown peer")
	// ErrDuplicatePeer means a peer name is configured twice.
	ErrDuplicatePeer = errors.New("duplicate peer")
	// ErrBadPrefix means a prefix is invalid, not masked, or not allowed
	// where it is used (a client address that is not a single host).
	ErrBadPrefix = errors.New("bad prefix")
	// ErrBadConfig means a configuration field has an invalid value.
	ErrBadConfig = errors.New("bad config")
	// ErrBadRule means an ACL rule is invalid.
	ErrBadRule = errors.New("bad acl rule")
)
