// Package closing guards objects whose methods may run while, or after,
// they are closed: the eBPF programs' maps, which a metrics scrape or a
// handshake may read or write while the edge shuts the program down. A
// method holds the guard shared while it uses the object; Close takes it
// alone, so it waits for the methods in use and the ones that come later
// find the object closed instead of a closed (or reused) descriptor.
package closing

import "sync"

// Guard is the zero value ready to use. Its methods are safe for
// concurrent use.
type Guard struct {
	mu     sync.RWMutex
	closed bool
}

// Use reports whether the object is open. If it is, the guard is held
// until Done, which the caller must call; if not, nothing is held.
func (g *Guard) Use() bool {
	g.mu.RLock()
	if g.closed {
		g.mu.RUnlock()
		return false
	}
	return true
}

// Done ends a use that Use allowed.
func (g *Guard) Done() { g.mu.RUnlock() }

// Close runs f once, alone: after every use in progress ended, and
// before Use reports the object closed. Later calls return nil.
func (g *Guard) Close(f func() error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	return f()
}
