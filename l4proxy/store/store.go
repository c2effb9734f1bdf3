// Package store is the edge's persistent state: the tunnels it accepts and
// their secrets, kept in a bbolt file that survives restarts. Each secret
// has a generation, one more at each rotation, so that the edge can tell
// the connections of a revoked secret from those of the current one.
//
// A Store is safe for concurrent use. One process at a time may hold the
// file open: bbolt locks it, and Open gives up after LockTimeout with an
// error wrapping ErrLocked.
//
// # Layout
//
// Each concept owns top-level buckets, all created by Open:
//
//	meta          "schema" -> schemaVersion (1 byte)
//	tunnels       ID (16 bytes) -> tunnel record (see tunnel.go)
//	tunnel_names  name -> ID
//
// Adding a concept means adding its bucket names to the buckets list and
// a file with its methods.
package store

import (
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// LockTimeout is how long Open waits for the file lock that another
// process holds.
const LockTimeout = time.Second

// schemaVersion is the layout version stored in the meta bucket.
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
	ErrLocked = errors.New("database file is locked by another process")
	// ErrCorrupt means a stored record or the schema is not what this
	// version of the code wrote.
	ErrCorrupt = errors.New("corrupt store")
)

var (
	bucketMeta        = []byte("meta")
	bucketTunnels     = []byte("tunnels")
	bucketTunnelNames = []byte("tunnel_names")

	keySchema = []byte("schema")

	// buckets lists every top-level bucket; Open creates the missing ones.
	buckets = [][]byte{bucketMeta, bucketTunnels, bucketTunnelNames}
)

// Store is the edge's tunnel store.
type Store struct {
	db *bolt.DB
}

// Open opens the store at path, creating the file (mode 0600) and its
// buckets if needed. If another process has the file open, Open fails
// after LockTimeout with an error wrapping ErrLocked.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: LockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("store: open %s: %w (gave up after %s; is another edge using it?)", path, ErrLocked, LockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range buckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch v := meta.Get(keySchema); {
		case v == nil:
			return meta.Put(keySchema, []byte{schemaVersion})
		case len(v) != 1 || v[0] != schemaVersion:
			return fmt.Errorf("%w: schema version %v, want [%d]", ErrCorrupt, v, schemaVersion)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// DB returns the open bbolt database, so that other parts of the edge (the
// L3 hub's clients and connectors) keep their own buckets in the same file:
// bbolt lets one process hold it. They must not touch this package's
// buckets (meta, tunnels, tunnel_names). It is closed by Close.
func (store *Store) DB() *bolt.DB { return store.db }

// Close closes the store and releases the file lock. Calls after Close
// fail.
func (store *Store) Close() error {
	if err := store.db.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}
