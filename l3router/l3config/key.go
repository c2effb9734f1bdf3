// Package l3config holds the formats the L3 on-ramp's two halves share:
// WireGuard keys and key files, the connector's configuration file
// (l3.yml), which the edge prints with `edge l3 connector add` and
// `connector l3 run` reads, and the wg-quick configuration the edge prints
// for clients. The edge never holds a connector's or a client's private
// key: a connector's l3.yml names the key file `connector l3 init` wrote on
// its host.
package l3config

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/crypto/curve25519"
)

// KeySize is the size of a WireGuard (Curve25519) key.
const KeySize = 32

// Key is a WireGuard private or public key. Its text form is the standard
// base64 that wg(8) and every WireGuard app use.
type Key [KeySize]byte

// GeneratePrivateKey returns a new clamped Curve25519 private key.
func GeneratePrivateKey() (Key, error) {
	var k Key
	if _, err := rand.Read(k[:]); err != nil {
		return Key{}, fmt.Errorf("generate key: %w", err)
	}
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	return k, nil
}

// PublicKey returns the public key of the private key k.
func (k Key) PublicKey() Key {
	var pub Key
	p, err := curve25519.X25519(k[:], curve25519.Basepoint)
	if err != nil {
		// Only a low-order result fails, impossible with the basepoint.
		panic(err)
	}
	copy(pub[:], p)
	return pub
}

// IsZero reports whether k is all zeros (unset).
func (k Key) IsZero() bool { return k == Key{} }

// String returns the base64 form.
func (k Key) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// Hex returns the lowercase hex form used by wireguard-go's UAPI (IpcSet).
func (k Key) Hex() string { return hex.EncodeToString(k[:]) }

// ErrBadKey is returned for text that is not a base64 WireGuard key.
var ErrBadKey = errors.New("not a WireGuard key (44 characters of base64 encoding 32 bytes)")

// ParseKey parses the base64 form of a key.
func ParseKey(s string) (Key, error) {
	var k Key
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != KeySize {
		return Key{}, ErrBadKey
	}
	copy(k[:], b)
	return k, nil
}

// MarshalText implements encoding.TextMarshaler (base64).
func (k Key) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// MaxKeyFileSize bounds a key file: a base64 key and a newline, with room
// for white space.
const MaxKeyFileSize = 256

// ReadKeyFile reads a private key file: the base64 key (as `wg genkey`
// prints it) and optional white space.
func ReadKeyFile(path string) (Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return Key{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxKeyFileSize+1))
	if err != nil {
		return Key{}, fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > MaxKeyFileSize {
		return Key{}, fmt.Errorf("%s: %w", path, ErrBadKey)
	}
	k, err := ParseKey(strings.TrimSpace(string(b)))
	if err != nil {
		return Key{}, fmt.Errorf("%s: %w", path, err)
	}
	if k.IsZero() {
		return Key{}, fmt.Errorf("%s: the key is all zeros", path)
	}
	return k, nil
}

// KeyFileData is what a private key file holds: the base64 key and a
// newline.
func (k Key) KeyFileData() []byte { return []byte(k.String() + "\n") }

// UnmarshalText implements encoding.TextUnmarshaler (base64).
func (k *Key) UnmarshalText(b []byte) error {
	v, err := ParseKey(string(b))
	if err != nil {
		return err
	}
	*k = v
	return nil
}
