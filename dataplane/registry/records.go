package registry

import (
	"context"
	"fmt"
	"time"
)

// Records is a Mirror of a space whose values decode into T: the
// stores' typed view of their records (tunnels, L3 peers).
type Records[T any] struct {
	m     *Mirror
	parse func(key string, v []byte) (T, error)
}

// MirrorRecords starts mirroring prefix of st until ctx is done and waits
// up to wait for the first listing. parse decodes a record; one that does
// not decode is as good as missing. onChange (may be nil) is called, in
// order and from one goroutine, for each record created (old nil),
// changed or removed (new nil), those of the first listing included as
// created.
func MirrorRecords[T any](ctx context.Context, st Store, prefix string, wait time.Duration,
	parse func(key string, v []byte) (T, error), onChange func(old, new *T)) (*Records[T], error) {
	r := &Records[T]{parse: parse}
	r.m = NewMirror(ctx, st, prefix, func(cs []Change) {
		if onChange == nil {
			return
		}
		for _, c := range cs {
			old, new := r.decode(c.Key, c.Old), r.decode(c.Key, c.New)
			if old != nil || new != nil {
				onChange(old, new)
			}
		}
	})
	sctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := r.m.Synced(sctx); err != nil {
		return nil, fmt.Errorf("%s: %w", st, err)
	}
	return r, nil
}

func (r *Records[T]) decode(key string, v []byte) *T {
	if v == nil {
		return nil
	}
	t, err := r.parse(key, v)
	if err != nil {
		return nil
	}
	return &t
}

// Get returns the record under key (the full key).
func (r *Records[T]) Get(key string) (T, bool) {
	v, ok := r.m.Get(key)
	if !ok {
		var zero T
		return zero, false
	}
	t := r.decode(key, v)
	if t == nil {
		var zero T
		return zero, false
	}
	return *t, true
}

// All returns every record that decodes, in no order.
func (r *Records[T]) All() []T {
	var out []T
	r.m.Range(func(k string, v []byte) bool {
		if t := r.decode(k, v); t != nil {
			out = append(out, *t)
		}
		return true
	})
	return out
}

// Mirror returns the underlying mirror (revisions, waits).
func (r *Records[T]) Mirror() *Mirror { return r.m }
