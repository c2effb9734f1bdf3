package registry

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Change is one key's change as a Mirror applies it: Old is nil for a new
// key, New is nil for a removed one.
type Change struct {
	Key      string
	Old, New []byte
}

// Mirror keeps the pairs under a prefix in memory, fed by Store.Watch,
// and calls its apply function with each batch of changes, in order, from
// one goroutine. Reads never reach the back end: when etcd is down the
// mirror keeps what it had, and catches up (a listing, diffed against what
// it had) when etcd is back.
type Mirror struct {
	prefix string
	apply  func([]Change)

	mu      sync.RWMutex
	data    map[string][]byte
	rev     int64
	at      time.Time     // when the last batch was applied
	synced  chan struct{} // closed after the first listing is applied
	advance chan struct{} // closed and replaced each time rev moves
	resets  int
	done    chan struct{}
}

// NewMirror starts mirroring prefix of st until ctx is done. apply may be
// nil; it must not wait for the mirror itself (WaitRevision).
func NewMirror(ctx context.Context, st Store, prefix string, apply func([]Change)) *Mirror {
	m := &Mirror{prefix: prefix, apply: apply, data: map[string][]byte{}, synced: make(chan struct{}),
		advance: make(chan struct{}), done: make(chan struct{})}
	ch := st.Watch(ctx, prefix)
	go func() {
		defer close(m.done)
		first := true
		for c := range ch {
			m.applyChanges(c)
			if first {
				close(m.synced)
				first = false
			}
		}
	}()
	return m
}

func (m *Mirror) applyChanges(c Changes) {
	var out []Change
	m.mu.Lock()
	if c.Reset {
		seen := make(map[string]bool, len(c.Pairs))
		for _, p := range c.Pairs {
			seen[p.Key] = true
			if old, ok := m.data[p.Key]; !ok || !bytes.Equal(old, p.Value) {
				out = append(out, Change{Key: p.Key, Old: old, New: p.Value})
				m.data[p.Key] = p.Value
			}
		}
		var gone []string
		for k := range m.data {
			if !seen[k] {
				gone = append(gone, k)
			}
		}
		sort.Strings(gone)
		for _, k := range gone {
			out = append(out, Change{Key: k, Old: m.data[k]})
			delete(m.data, k)
		}
		m.resets++
	} else {
		for _, p := range c.Pairs {
			old, ok := m.data[p.Key]
			switch {
			case p.Value == nil && !ok:
				continue
			case p.Value == nil:
				delete(m.data, p.Key)
			case ok && bytes.Equal(old, p.Value):
				continue
			default:
				m.data[p.Key] = p.Value
			}
			out = append(out, Change{Key: p.Key, Old: old, New: p.Value})
		}
	}
	m.mu.Unlock()
	if len(out) > 0 && m.apply != nil {
		m.apply(out)
	}
	// The revision moves after apply: WaitRevision returning means the
	// changes up to it were applied, their effects included.
	m.mu.Lock()
	if c.Revision > m.rev || c.Reset {
		m.rev = max(m.rev, c.Revision)
	}
	m.at = time.Now()
	close(m.advance)
	m.advance = make(chan struct{})
	m.mu.Unlock()
}

// Get returns the value of key (the full key, prefix included).
func (m *Mirror) Get(key string) ([]byte, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	v, ok := m.data[key]
	return v, ok
}

// Range calls fn for each pair, in no order, until fn returns false. The
// mirror is read-locked meanwhile: fn must not wait on it.
func (m *Mirror) Range(fn func(key string, value []byte) bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for k, v := range m.data {
		if !fn(k, v) {
			return
		}
	}
}

// Len returns the number of pairs.
func (m *Mirror) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.data)
}

// Revision returns the revision the mirror has applied, and when it
// last applied a batch.
func (m *Mirror) Revision() (int64, time.Time) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.rev, m.at
}

// Synced waits until the first listing is applied.
func (m *Mirror) Synced(ctx context.Context) error {
	select {
	case <-m.synced:
		return nil
	case <-m.done:
		return fmt.Errorf("registry: mirror of %q stopped before its first listing", m.prefix)
	case <-ctx.Done():
		return fmt.Errorf("registry: mirror of %q: no listing yet: %w", m.prefix, ctx.Err())
	}
}

// WaitRevision waits until the mirror applied rev (a revision Update
// returned for a write under the prefix) and the apply function ran for
// it.
func (m *Mirror) WaitRevision(ctx context.Context, rev int64) error {
	for {
		m.mu.RLock()
		ok, adv := m.rev >= rev, m.advance
		m.mu.RUnlock()
		if ok {
			return nil
		}
		select {
		case <-adv:
		case <-m.done:
			return fmt.Errorf("registry: mirror of %q stopped", m.prefix)
		case <-ctx.Done():
			return fmt.Errorf("registry: mirror of %q has not seen revision %d yet: %w", m.prefix, rev, ctx.Err())
		}
	}
}
