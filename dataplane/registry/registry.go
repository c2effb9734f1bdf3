// Package registry is where the edge keeps its state: a transactional
// key-value space with a watch, behind one interface with two back ends.
//
//   - [OpenBolt]: an embedded bbolt file, for a single edge (the default:
//     nothing to run). One process holds the file.
//   - [OpenEtcd]: an etcd cluster, for several edges sharing one state.
//     Transactions are optimistic: what a transaction read is compared in
//     the etcd transaction that writes, and the transaction runs again if
//     another writer got there first.
//
// The package holds mechanism only: keys and values are bytes, and the
// packages that own the records (the tunnel store, the L3 store) define
// their layout. A key is "space/name": the space is a bbolt bucket (the
// layout of an edge's file from before the registry existed, read as it
// is), and under etcd a key is the configured prefix followed by the key.
//
// Readers on the data path do not ask the back end: a [Mirror] keeps a
// space in memory, fed by [Store.Watch], so that an edge keeps serving
// what it knows when etcd is unreachable, and every edge reacts to a
// change made on any of them.
package registry

import (
	"context"
	"errors"
	"strings"
)

// Errors of the back ends, wrapped with what failed: test with errors.Is.
var (
	// ErrUnavailable means the back end could not be reached or has no
	// quorum: the change was refused (or its outcome is unknown when the
	// error says so). What the edge knows keeps being served.
	ErrUnavailable = errors.New("registry unavailable")
	// ErrConflict means a transaction kept losing to concurrent writers
	// and gave up.
	ErrConflict = errors.New("registry transaction kept conflicting with other writers")
	// ErrTooLarge means a transaction writes more keys than the back end
	// takes at once (etcd's --max-txn-ops, 128 by default).
	ErrTooLarge = errors.New("registry transaction too large")
	// ErrBadKey means a key is not "space/name" with a non-empty space.
	ErrBadKey = errors.New("bad registry key")
)

// Pair is a key and its value.
type Pair struct {
	Key   string
	Value []byte
}

// Txn is a transaction's view of the registry. Reads see one consistent
// state and the transaction's own writes. Values returned are the
// caller's to keep.
type Txn interface {
	// Get returns the value of key, or nil if there is none.
	Get(key string) ([]byte, error)
	// List returns the pairs whose key starts with prefix, sorted by key.
	List(prefix string) ([]Pair, error)
	// Put sets key to value.
	Put(key string, value []byte) error
	// Delete removes key; removing a missing key is no error.
	Delete(key string) error
}

// Store is a registry back end. Its methods are safe for concurrent use.
type Store interface {
	// View runs fn in a read-only transaction.
	View(ctx context.Context, fn func(Txn) error) error
	// Update runs fn in a read-write transaction and commits its writes
	// all together or not at all; it returns the revision of the commit
	// (0 if fn wrote nothing). fn may run more than once (etcd, when
	// another writer changed what it read): it must not act on the world
	// beyond the transaction. An error from fn is returned as it is and
	// nothing is written.
	Update(ctx context.Context, fn func(Txn) error) (int64, error)
	// Watch sends the state of every key under prefix, then each change,
	// until ctx is done; then it closes the channel. The first Changes,
	// and any after the back end lost track (etcd compacted the history
	// the watch needed), has Reset set and lists every key.
	Watch(ctx context.Context, prefix string) <-chan Changes
	// String names the back end for logs and errors ("bbolt FILE", "etcd
	// ENDPOINTS prefix P").
	String() string
	// Close releases the back end. Watches end.
	Close() error
}

// Changes is what a watch delivers: every pair under the prefix (Reset)
// or the pairs changed by one or more commits (a nil Value: deleted), up
// to Revision.
type Changes struct {
	Reset    bool
	Pairs    []Pair
	Revision int64
}

// space splits a key into its space and the rest.
func space(key string) (string, string, error) {
	sp, rest, ok := strings.Cut(key, "/")
	if !ok || sp == "" {
		return "", "", ErrBadKey
	}
	return sp, rest, nil
}
