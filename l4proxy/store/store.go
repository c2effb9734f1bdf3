// Package store is the edge's tunnels: the tunnels it accepts and their
// secrets, kept in the edge's registry (a bbolt file that survives
// restarts, or etcd shared by several edges). Each secret
// has a generation, one more at each rotation, so that the edge can tell
// the connections of a revoked secret from those of the current one.
//
// A Store is safe for concurrent use. One process at a time may hold a
// bbolt file open: bbolt locks it, and Open gives up after LockTimeout with
// an error wrapping ErrLocked.
//
// # Layout
//
// Each concept owns registry spaces:
//
//	meta/schema          schemaVersion (1 byte)
//	tunnels/ID           tunnel record (ID: 16 bytes; see tunnel.go)
//	tunnel_names/NAME    ID
//
// These are the buckets of the bbolt file from before the registry
// existed: an edge's file is read as it is.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/onramp-net/onramp/dataplane/registry"
)

// LockTimeout is how long Open waits for the file lock that another
// process holds.
const LockTimeout = registry.LockTimeout

// schemaVersion is the layout version stored in the meta space.
const schemaVersion = 1

// Sentinel errors, wrapped with the operation: errors.Is(err, ErrNotFound).
var (
	// ErrNotFound means no tunnel has the given ID or name.
	ErrNotFound = errors.New("not found")
	// ErrExists means a tunnel with the given name already exists.
	ErrExists = errors.New("already exists")
	// ErrInvalidName means a tunnel name breaks the rules of ValidName.
	ErrInvalidName = errors.New("invalid tunnel name")
	// ErrLocked means another process holds the database file open.
	ErrLocked = registry.ErrLocked
	// ErrCorrupt means a stored record or the schema is not what this
	// version of the code wrote.
	ErrCorrupt = errors.New("corrupt store")
)

// Registry keys: a space and a name (see package registry).
const (
	keySchema     = "meta/schema"
	prefixTunnels = "tunnels/"      // + ID (16 bytes) -> tunnel record
	prefixNames   = "tunnel_names/" // + name -> ID
)

// Store is the edge's tunnel store.
type Store struct {
	reg registry.Store
	own bool // Close closes reg

	tunnels *Tunnels // the mirror writes wait for, once Mirror made it
}

// Open opens the store in the bbolt file at path, creating the file (mode
// 0600) if needed. If another process has the file open, Open fails
// after LockTimeout with an error wrapping ErrLocked. Close closes the
// file.
func Open(path string) (*Store, error) {
	b, err := registry.OpenBolt(path)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	s, err := New(b)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	s.own = true
	return s, nil
}

// New returns the store kept in reg, recording the schema version on
// first use. Close does not close reg.
func New(reg registry.Store) (*Store, error) {
	_, err := reg.Update(context.Background(), func(tx registry.Txn) error {
		switch v, err := tx.Get(keySchema); {
		case err != nil:
			return err
		case v == nil:
			return tx.Put(keySchema, []byte{schemaVersion})
		case len(v) != 1 || v[0] != schemaVersion:
			return fmt.Errorf("%w: schema version %v, want [%d]", ErrCorrupt, v, schemaVersion)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", reg, err)
	}
	return &Store{reg: reg}, nil
}

// Registry returns the registry the store keeps its records in, shared
// with the other parts of the edge's state (the L3 hub's clients and
// connectors), which keep to their own spaces.
func (store *Store) Registry() registry.Store { return store.reg }

// Close closes the store, and the bbolt file if Open opened it. Calls
// after Close fail.
func (store *Store) Close() error {
	if !store.own {
		return nil
	}
	if err := store.reg.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// update runs fn in a registry transaction and, once it committed, waits
// until the mirror (if any) has applied it: what a change implies (the
// connections of a deleted tunnel dropped) is done when it returns.
func (store *Store) update(fn func(registry.Txn) error) error {
	rev, err := store.reg.Update(context.Background(), fn)
	if err != nil || rev == 0 || store.tunnels == nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), mirrorWait)
	defer cancel()
	if err := store.tunnels.r.Mirror().WaitRevision(ctx, rev); err != nil {
		return fmt.Errorf("the change is made but this edge has not applied it yet: %w", err)
	}
	return nil
}

// mirrorWait bounds how long a change waits for its mirror.
var mirrorWait = 10 * time.Second
