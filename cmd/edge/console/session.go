package console

// Sessions and one-time links: random 32-byte secrets kept in memory (a
// restart of the edge logs everyone out and voids every link), in tables
// of bounded size, looked up by their SHA-256 so that the tables hold no
// secret and a lookup's timing says nothing about one.

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"sync"
	"time"
)

// The session and link limits.
const (
	maxSessions     = 256                // logged-in browsers; a new one ends the least recently used
	sessionIdle     = 12 * time.Hour     // a session unused this long ends
	sessionLifetime = 7 * 24 * time.Hour // a session ends this long after its login, used or not
	maxLinks        = 16                 // one-time links not yet used nor expired
	linkLifetime    = 10 * time.Minute   // a link is good this long, once
)

// newSecret returns 32 random bytes in unpadded base64url (43 characters).
func newSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// secretKey is what a table keeps of a secret.
type secretKey [sha256.Size]byte

func keyOf(secret string) secretKey { return sha256.Sum256([]byte(secret)) }

// session is a logged-in browser.
type session struct {
	csrf    string    // the token every POST carries; fixed for the session
	created time.Time // the login
	used    time.Time // the last request
}

// sessions is the table of sessions.
type sessions struct {
	mu sync.Mutex
	m  map[secretKey]*session
}

// create starts a session and returns its ID (the cookie's value) and
// CSRF token. A full table ends the least recently used session.
func (t *sessions) create(now time.Time) (id, csrf string) {
	id, csrf = newSecret(), newSecret()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[secretKey]*session)
	}
	if len(t.m) >= maxSessions {
		t.sweepLocked(now)
	}
	if len(t.m) >= maxSessions {
		var oldest secretKey
		var at time.Time
		for k, s := range t.m {
			if at.IsZero() || s.used.Before(at) {
				oldest, at = k, s.used
			}
		}
		delete(t.m, oldest)
	}
	t.m[keyOf(id)] = &session{csrf: csrf, created: now, used: now}
	return id, csrf
}

func (s *session) expired(now time.Time) bool {
	return now.Sub(s.used) >= sessionIdle || now.Sub(s.created) >= sessionLifetime
}

// sweepLocked ends the expired sessions. t.mu is held.
func (t *sessions) sweepLocked(now time.Time) {
	for k, s := range t.m {
		if s.expired(now) {
			delete(t.m, k)
		}
	}
}

// get returns the CSRF token of the live session id and marks it used;
// ok is false for an unknown or expired one (which it ends).
func (t *sessions) get(id string, now time.Time) (csrf string, ok bool) {
	if id == "" {
		return "", false
	}
	k := keyOf(id)
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.m[k]
	if s == nil {
		return "", false
	}
	if s.expired(now) {
		delete(t.m, k)
		return "", false
	}
	s.used = now
	return s.csrf, true
}

// end ends the session id, if it is live.
func (t *sessions) end(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, keyOf(id))
}

// endAll ends every session (the password changed).
func (t *sessions) endAll() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(t.m)
	clear(t.m)
	return n
}

// links is the table of one-time links, by their tokens' keys: when each
// expires.
type links struct {
	mu sync.Mutex
	m  map[secretKey]time.Time
}

var errTooManyLinks = errors.New("console: too many one-time links outstanding; use one or wait for them to expire (10 minutes)")

// create returns a new link's token.
func (t *links) create(now time.Time) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[secretKey]time.Time)
	}
	for k, exp := range t.m {
		if !now.Before(exp) {
			delete(t.m, k)
		}
	}
	if len(t.m) >= maxLinks {
		return "", errTooManyLinks
	}
	token := newSecret()
	t.m[keyOf(token)] = now.Add(linkLifetime)
	return token, nil
}

// valid reports whether the link token is live, without spending it.
func (t *links) valid(token string, now time.Time) bool {
	if token == "" {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	exp, ok := t.m[keyOf(token)]
	return ok && now.Before(exp)
}

// use consumes the link token: true once, if it is live.
func (t *links) use(token string, now time.Time) bool {
	if token == "" {
		return false
	}
	k := keyOf(token)
	t.mu.Lock()
	defer t.mu.Unlock()
	exp, ok := t.m[k]
	delete(t.m, k)
	return ok && now.Before(exp)
}
