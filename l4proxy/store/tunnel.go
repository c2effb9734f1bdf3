package store

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Sizes of generated tunnel credentials and the limit on names.
const (
	IDSize        = 16
	SecretSize    = 32
	MaxNameLength = 63
)

// Tunnel is a tunnel the edge accepts connectors for. The connector proves
// itself with ID and Secret.
type Tunnel struct {
	ID      [IDSize]byte
	Name    string
	Secret  []byte // SecretSize random bytes; the caller's copy
	Created time.Time
}

// ValidName reports whether name may name a tunnel: 1 to 63 characters,
// each a lowercase ASCII letter, a digit or '-'. The error wraps
// ErrInvalidName and says what is wrong.
func ValidName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrInvalidName)
	}
	if len(name) > MaxNameLength {
		return fmt.Errorf("%w: %d characters, want at most %d", ErrInvalidName, len(name), MaxNameLength)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 0x80 {
			return fmt.Errorf("%w: non-ASCII byte %#x at %d, want a-z, 0-9 or '-'", ErrInvalidName, c, i)
		}
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return fmt.Errorf("%w: character %q at %d, want a-z, 0-9 or '-'", ErrInvalidName, c, i)
		}
	}
	return nil
}

// CreateTunnel creates a tunnel named name with a random ID and secret
// and returns it. It returns an error wrapping ErrInvalidName if the name
// breaks the rules of ValidName, and ErrExists if a tunnel has that name.
func (store *Store) CreateTunnel(name string) (Tunnel, error) {
	if err := ValidName(name); err != nil {
		return Tunnel{}, fmt.Errorf("store: create tunnel %q: %w", name, err)
	}
	t := Tunnel{
		Name:    name,
		Secret:  make([]byte, SecretSize),
		Created: time.Unix(0, time.Now().UnixNano()).UTC(),
	}
	if _, err := rand.Read(t.Secret); err != nil {
		return Tunnel{}, fmt.Errorf("store: create tunnel %q: %w", name, err)
	}
	err := store.db.Update(func(tx *bolt.Tx) error {
		names, tunnels := tx.Bucket(bucketTunnelNames), tx.Bucket(bucketTunnels)
		if names.Get([]byte(name)) != nil {
			return ErrExists
		}
		// A collision of random 128-bit IDs will not happen; check anyway.
		for {
			if _, err := rand.Read(t.ID[:]); err != nil {
				return err
			}
			if tunnels.Get(t.ID[:]) == nil {
				break
			}
		}
		if err := tunnels.Put(t.ID[:], appendTunnel(nil, t)); err != nil {
			return err
		}
		return names.Put([]byte(name), t.ID[:])
	})
	if err != nil {
		return Tunnel{}, fmt.Errorf("store: create tunnel %q: %w", name, err)
	}
	return t, nil
}

// GetTunnel returns the tunnel with the given ID, or an error wrapping
// ErrNotFound.
func (store *Store) GetTunnel(id [IDSize]byte) (Tunnel, error) {
	var t Tunnel
	err := store.db.View(func(tx *bolt.Tx) error {
		var err error
		t, err = getTunnel(tx, id[:])
		return err
	})
	if err != nil {
		return Tunnel{}, fmt.Errorf("store: get tunnel %x: %w", id, err)
	}
	return t, nil
}

// TunnelByName returns the tunnel named name, or an error wrapping
// ErrNotFound.
func (store *Store) TunnelByName(name string) (Tunnel, error) {
	var t Tunnel
	err := store.db.View(func(tx *bolt.Tx) error {
		var err error
		t, err = tunnelByName(tx, name)
		return err
	})
	if err != nil {
		return Tunnel{}, fmt.Errorf("store: tunnel %q: %w", name, err)
	}
	return t, nil
}

// ListTunnels returns every tunnel, sorted by name.
func (store *Store) ListTunnels() ([]Tunnel, error) {
	var list []Tunnel
	err := store.db.View(func(tx *bolt.Tx) error {
		// tunnel_names iterates in byte order, which is name order.
		return tx.Bucket(bucketTunnelNames).ForEach(func(name, id []byte) error {
			t, err := getTunnel(tx, id)
			if err != nil {
				return fmt.Errorf("tunnel %q: %w", name, err)
			}
			list = append(list, t)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: list tunnels: %w", err)
	}
	return list, nil
}

// DeleteTunnel deletes the tunnel named name and returns it, so that the
// caller can drop the tunnel's live connections. It returns an error
// wrapping ErrNotFound if there is no such tunnel.
func (store *Store) DeleteTunnel(name string) (Tunnel, error) {
	var t Tunnel
	err := store.db.Update(func(tx *bolt.Tx) error {
		var err error
		if t, err = tunnelByName(tx, name); err != nil {
			return err
		}
		if err := tx.Bucket(bucketTunnels).Delete(t.ID[:]); err != nil {
			return err
		}
		return tx.Bucket(bucketTunnelNames).Delete([]byte(name))
	})
	if err != nil {
		return Tunnel{}, fmt.Errorf("store: delete tunnel %q: %w", name, err)
	}
	return t, nil
}

// Secret returns a copy of the secret of the tunnel with the given ID, and
// false if there is no such tunnel or the store cannot be read. It lets a
// Store authenticate connectors; compare secrets in constant time.
func (store *Store) Secret(id [IDSize]byte) ([]byte, bool) {
	t, err := store.GetTunnel(id)
	if err != nil {
		return nil, false
	}
	return t.Secret, true
}

func tunnelByName(tx *bolt.Tx, name string) (Tunnel, error) {
	id := tx.Bucket(bucketTunnelNames).Get([]byte(name))
	if id == nil {
		return Tunnel{}, ErrNotFound
	}
	return getTunnel(tx, id)
}

func getTunnel(tx *bolt.Tx, id []byte) (Tunnel, error) {
	v := tx.Bucket(bucketTunnels).Get(id)
	if v == nil {
		return Tunnel{}, ErrNotFound
	}
	return parseTunnel(id, v)
}

// Tunnel records: version (1 byte, 1), Created in Unix nanoseconds (8
// bytes, big endian), secret length (1 byte), secret, name (the rest).
const (
	tunnelRecordVersion = 1
	tunnelRecordHeader  = 1 + 8 + 1
)

// appendTunnel appends the record for t to b.
func appendTunnel(b []byte, t Tunnel) []byte {
	b = append(b, tunnelRecordVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(t.Created.UnixNano()))
	b = append(b, byte(len(t.Secret)))
	b = append(b, t.Secret...)
	return append(b, t.Name...)
}

// parseTunnel decodes a record stored under id. The result shares no
// memory with v, which bbolt owns.
func parseTunnel(id, v []byte) (Tunnel, error) {
	if len(id) != IDSize || len(v) < tunnelRecordHeader || v[0] != tunnelRecordVersion {
		return Tunnel{}, fmt.Errorf("%w: bad tunnel record %x", ErrCorrupt, id)
	}
	n := int(v[9])
	if len(v) < tunnelRecordHeader+n {
		return Tunnel{}, fmt.Errorf("%w: short tunnel record %x", ErrCorrupt, id)
	}
	t := Tunnel{
		Secret:  bytes.Clone(v[tunnelRecordHeader : tunnelRecordHeader+n]),
		Name:    string(v[tunnelRecordHeader+n:]),
		Created: time.Unix(0, int64(binary.BigEndian.Uint64(v[1:9]))).UTC(),
	}
	copy(t.ID[:], id)
	return t, nil
}
