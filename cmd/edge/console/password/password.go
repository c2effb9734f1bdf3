// Package password hashes and checks the edge console's login password:
// argon2id (RFC 9106) in the PHC string form that console.password_hash in
// edge.yml holds,
//
//	$argon2id$v=19$m=65536,t=3,p=4$<salt, base64>$<key, base64>
//
// The parameters travel in the string, so a hash made with other costs
// still checks; Check bounds them, so that a hash cannot make each login
// take gigabytes.
package password

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Params are argon2id's costs.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8
}

// Default is RFC 9106's second recommended option (section 4): 64 MiB, 3
// passes, 4 lanes; about a tenth of a second on one core of a small
// server, and the console runs at most two at once.
var Default = Params{Memory: 64 << 10, Time: 3, Threads: 4}

// Bounds of the parameters Check accepts.
const (
	MaxMemory  = 256 << 10 // KiB: 256 MiB
	MaxTime    = 16
	MaxThreads = 16
	saltLen    = 16
	keyLen     = 32
)

// Lengths of a password Hash accepts (bytes).
const (
	MinLen = 8
	MaxLen = 1024
)

var b64 = base64.RawStdEncoding

// Hash returns the PHC string of pw with a new random salt, at the costs
// of Default.
func Hash(pw []byte) (string, error) { return HashWith(pw, Default) }

// HashWith is Hash at the costs p (tests use cheap ones).
func HashWith(pw []byte, p Params) (string, error) {
	if len(pw) < MinLen {
		return "", fmt.Errorf("password: want at least %d bytes, have %d", MinLen, len(pw))
	}
	if len(pw) > MaxLen {
		return "", fmt.Errorf("password: want at most %d bytes, have %d", MaxLen, len(pw))
	}
	if err := p.check(); err != nil {
		return "", err
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey(pw, salt, p.Time, p.Memory, p.Threads, keyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

func (p Params) check() error {
	switch {
	case p.Memory < 8*uint32(p.Threads) || p.Memory > MaxMemory:
		return fmt.Errorf("argon2id memory m=%d KiB: want %d to %d", p.Memory, 8*uint32(p.Threads), MaxMemory)
	case p.Time < 1 || p.Time > MaxTime:
		return fmt.Errorf("argon2id time t=%d: want 1 to %d", p.Time, MaxTime)
	case p.Threads < 1 || p.Threads > MaxThreads:
		return fmt.Errorf("argon2id parallelism p=%d: want 1 to %d", p.Threads, MaxThreads)
	}
	return nil
}

// hash is a parsed PHC string.
type hash struct {
	p         Params
	salt, key []byte
}

func parse(s string) (hash, error) {
	var h hash
	f := strings.Split(s, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" {
		return h, errors.New("want an argon2id hash $argon2id$v=19$m=...,t=...,p=...$SALT$KEY, as `edge console passwd` writes it")
	}
	if f[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return h, fmt.Errorf("argon2id version %q: want v=%d", f[2], argon2.Version)
	}
	var threads uint32
	if n, err := fmt.Sscanf(f[3], "m=%d,t=%d,p=%d", &h.p.Memory, &h.p.Time, &threads); err != nil || n != 3 ||
		f[3] != fmt.Sprintf("m=%d,t=%d,p=%d", h.p.Memory, h.p.Time, threads) {
		return h, fmt.Errorf("argon2id parameters %q: want m=KIB,t=PASSES,p=LANES", f[3])
	}
	if threads > MaxThreads {
		return h, fmt.Errorf("argon2id parallelism p=%d: want 1 to %d", threads, MaxThreads)
	}
	h.p.Threads = uint8(threads)
	if err := h.p.check(); err != nil {
		return h, err
	}
	var err error
	if h.salt, err = b64.DecodeString(f[4]); err != nil || len(h.salt) < 8 || len(h.salt) > 64 {
		return h, errors.New("argon2id salt: want 8 to 64 bytes in unpadded base64")
	}
	if h.key, err = b64.DecodeString(f[5]); err != nil || len(h.key) < 16 || len(h.key) > 64 {
		return h, errors.New("argon2id key: want 16 to 64 bytes in unpadded base64")
	}
	return h, nil
}

// Check reports whether s is a hash Verify can check.
func Check(s string) error {
	_, err := parse(s)
	return err
}

// Verify reports whether pw is the password of the hash s, comparing in
// constant time. It costs what the hash's parameters say: callers bound
// how many run at once.
func Verify(s string, pw []byte) (bool, error) {
	h, err := parse(s)
	if err != nil {
		return false, err
	}
	if len(pw) > MaxLen {
		return false, nil
	}
	key := argon2.IDKey(pw, h.salt, h.p.Time, h.p.Memory, h.p.Threads, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(key, h.key) == 1, nil
}
