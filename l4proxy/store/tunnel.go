package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/onramp-net/onramp/dataplane/registry"
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
	// Generation counts the tunnel's secrets: 1 when created, one more at
	// each RotateTunnel. A connection remembers the generation it
	// authenticated with, so that the edge can tell, after a rotation,
	// which connections hold a revoked secret.
	Generation uint64
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
		Name:       name,
		Secret:     make([]byte, SecretSize),
		Created:    time.Unix(0, time.Now().UnixNano()).UTC(),
		Generation: tunnelFirstGeneration,
	}
	if _, err := rand.Read(t.Secret); err != nil {
		return Tunnel{}, fmt.Errorf("store: create tunnel %q: %w", name, err)
	}
	if _, err := rand.Read(t.ID[:]); err != nil {
		return Tunnel{}, fmt.Errorf("store: create tunnel %q: %w", name, err)
	}
	err := store.update(func(tx registry.Txn) error {
		if v, err := tx.Get(prefixNames + name); err != nil {
			return err
		} else if v != nil {
			return ErrExists
		}
		// A collision of random 128-bit IDs will not happen; check anyway.
		if v, err := tx.Get(prefixTunnels + string(t.ID[:])); err != nil {
			return err
		} else if v != nil {
			return fmt.Errorf("%w: tunnel ID %x", ErrExists, t.ID)
		}
		if err := tx.Put(prefixTunnels+string(t.ID[:]), appendTunnel(nil, t)); err != nil {
			return err
		}
		return tx.Put(prefixNames+name, t.ID[:])
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
	err := store.reg.View(context.Background(), func(tx registry.Txn) error {
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
	err := store.reg.View(context.Background(), func(tx registry.Txn) error {
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
	err := store.reg.View(context.Background(), func(tx registry.Txn) error {
		// The names list in key order, which is name order.
		names, err := tx.List(prefixNames)
		if err != nil {
			return err
		}
		recs, err := tx.List(prefixTunnels)
		if err != nil {
			return err
		}
		byID := make(map[string][]byte, len(recs))
		for _, r := range recs {
			byID[strings.TrimPrefix(r.Key, prefixTunnels)] = r.Value
		}
		for _, n := range names {
			v := byID[string(n.Value)]
			if v == nil {
				return fmt.Errorf("tunnel %q: %w", strings.TrimPrefix(n.Key, prefixNames), ErrCorrupt)
			}
			t, err := parseTunnel(n.Value, v)
			if err != nil {
				return fmt.Errorf("tunnel %q: %w", strings.TrimPrefix(n.Key, prefixNames), err)
			}
			list = append(list, t)
		}
		return nil
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
	err := store.update(func(tx registry.Txn) error {
		var err error
		if t, err = tunnelByName(tx, name); err != nil {
			return err
		}
		if err := tx.Delete(prefixTunnels + string(t.ID[:])); err != nil {
			return err
		}
		return tx.Delete(prefixNames + name)
	})
	if err != nil {
		return Tunnel{}, fmt.Errorf("store: delete tunnel %q: %w", name, err)
	}
	return t, nil
}

// RotateTunnel gives the tunnel named name a new random secret and the
// next generation, and returns it; its ID, name and creation time stay. The
// old secret stops authenticating at once; the caller drops the live
// connections that authenticated with it (their generation is older). It
// returns an error wrapping ErrNotFound if there is no such tunnel.
func (store *Store) RotateTunnel(name string) (Tunnel, error) {
	secret := make([]byte, SecretSize)
	if _, err := rand.Read(secret); err != nil {
		return Tunnel{}, fmt.Errorf("store: rotate tunnel %q: %w", name, err)
	}
	var t Tunnel
	err := store.update(func(tx registry.Txn) error {
		var err error
		if t, err = tunnelByName(tx, name); err != nil {
			return err
		}
		t.Secret = secret
		t.Generation++
		return tx.Put(prefixTunnels+string(t.ID[:]), appendTunnel(nil, t))
	})
	if err != nil {
		return Tunnel{}, fmt.Errorf("store: rotate tunnel %q: %w", name, err)
	}
	return t, nil
}

// Secret returns a copy of the secret of the tunnel with the given ID, and
// false if there is no such tunnel or the store cannot be read. It lets a
// Store authenticate connectors; compare secrets in constant time.
func (store *Store) Secret(id [IDSize]byte) ([]byte, bool) {
	secret, _, ok := store.Credential(id)
	return secret, ok
}

// Credential is Secret with the secret's generation, which the edge keeps
// with each connection that authenticates with it. With a Mirror it reads
// the mirror, never the back end.
func (store *Store) Credential(id [IDSize]byte) (secret []byte, generation uint64, ok bool) {
	var t Tunnel
	if store.tunnels != nil {
		t, ok = store.tunnels.Get(id)
		if !ok {
			return nil, 0, false
		}
	} else {
		var err error
		if t, err = store.GetTunnel(id); err != nil {
			return nil, 0, false
		}
	}
	return t.Secret, t.Generation, true
}

func tunnelByName(tx registry.Txn, name string) (Tunnel, error) {
	id, err := tx.Get(prefixNames + name)
	if err != nil {
		return Tunnel{}, err
	}
	if id == nil {
		return Tunnel{}, ErrNotFound
	}
	return getTunnel(tx, id)
}

func getTunnel(tx registry.Txn, id []byte) (Tunnel, error) {
	v, err := tx.Get(prefixTunnels + string(id))
	if err != nil {
		return Tunnel{}, err
	}
	if v == nil {
		return Tunnel{}, ErrNotFound
	}
	return parseTunnel(id, v)
}

// Tunnel records, version 2: version (1 byte, 2), Created in Unix
// nanoseconds (8 bytes, big endian), Generation (8 bytes, big endian),
// secret length (1 byte), secret, name (the rest). Version 1 records, from
// before rotation existed, have no Generation: they read as generation 1
// and are rewritten as version 2 by the next rotation.
const (
	tunnelRecordVersion   = 2
	tunnelRecordV1        = 1
	tunnelRecordHeader    = 1 + 8 + 8 + 1
	tunnelRecordV1Header  = 1 + 8 + 1
	tunnelFirstGeneration = 1
)

// appendTunnel appends the record for t to b.
func appendTunnel(b []byte, t Tunnel) []byte {
	b = append(b, tunnelRecordVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(t.Created.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, t.Generation)
	b = append(b, byte(len(t.Secret)))
	b = append(b, t.Secret...)
	return append(b, t.Name...)
}

// parseTunnel decodes a record stored under id. The result shares no
// memory with v.
func parseTunnel(id, v []byte) (Tunnel, error) {
	if len(id) != IDSize || len(v) == 0 {
		return Tunnel{}, fmt.Errorf("%w: bad tunnel record %x", ErrCorrupt, id)
	}
	header, gen := tunnelRecordHeader, uint64(0)
	switch {
	case v[0] == tunnelRecordVersion && len(v) >= tunnelRecordHeader:
		gen = binary.BigEndian.Uint64(v[9:17])
	case v[0] == tunnelRecordV1 && len(v) >= tunnelRecordV1Header:
		header, gen = tunnelRecordV1Header, tunnelFirstGeneration
	default:
		return Tunnel{}, fmt.Errorf("%w: bad tunnel record %x", ErrCorrupt, id)
	}
	n := int(v[header-1])
	if len(v) < header+n {
		return Tunnel{}, fmt.Errorf("%w: short tunnel record %x", ErrCorrupt, id)
	}
	t := Tunnel{
		Secret:     bytes.Clone(v[header : header+n]),
		Name:       string(v[header+n:]),
		Created:    time.Unix(0, int64(binary.BigEndian.Uint64(v[1:9]))).UTC(),
		Generation: gen,
	}
	copy(t.ID[:], id)
	return t, nil
}
