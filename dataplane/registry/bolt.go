package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// LockTimeout is how long OpenBolt waits for the file lock that another
// process holds.
const LockTimeout = time.Second

// ErrLocked means another process holds the bbolt file open.
var ErrLocked = errors.New("database file is locked by another process")

// Bolt is the bbolt back end: a space is a bucket, created by the first
// Put into it. It is the only writer of its file (bbolt locks it), so its
// watch is fed by its own commits; revisions count them from Open on.
type Bolt struct {
	db   *bolt.DB
	path string

	mu       sync.Mutex // serializes commits with watch registration
	rev      int64
	watchers map[*boltWatcher]struct{}
}

// OpenBolt opens (creating, mode 0600) the bbolt file at path. If
// another process has it open, it fails after LockTimeout with an error
// wrapping ErrLocked.
func OpenBolt(path string) (*Bolt, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: LockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open %s: %w (gave up after %s; is another edge using it?)", path, ErrLocked, LockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &Bolt{db: db, path: path, rev: 1, watchers: map[*boltWatcher]struct{}{}}, nil
}

// String implements Store.
func (b *Bolt) String() string { return "bbolt " + b.path }

// Close implements Store.
func (b *Bolt) Close() error {
	b.mu.Lock()
	for w := range b.watchers {
		w.stop()
	}
	b.mu.Unlock()
	if err := b.db.Close(); err != nil {
		return fmt.Errorf("registry: close %s: %w", b.path, err)
	}
	return nil
}

// View implements Store.
func (b *Bolt) View(_ context.Context, fn func(Txn) error) error {
	return b.db.View(func(tx *bolt.Tx) error { return fn(&boltTxn{tx: tx}) })
}

// Update implements Store.
func (b *Bolt) Update(_ context.Context, fn func(Txn) error) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var t *boltTxn
	err := b.db.Update(func(tx *bolt.Tx) error {
		t = &boltTxn{tx: tx, writes: map[string][]byte{}}
		return fn(t)
	})
	if err != nil {
		return 0, err
	}
	if len(t.order) == 0 {
		return 0, nil
	}
	b.rev++
	for w := range b.watchers {
		var ch []Pair
		for _, k := range t.order {
			if strings.HasPrefix(k, w.prefix) {
				ch = append(ch, Pair{Key: k, Value: t.writes[k]})
			}
		}
		if len(ch) > 0 {
			w.push(Changes{Pairs: ch, Revision: b.rev})
		}
	}
	return b.rev, nil
}

// Watch implements Store.
func (b *Bolt) Watch(ctx context.Context, prefix string) <-chan Changes {
	out := make(chan Changes)
	w := &boltWatcher{prefix: prefix, wake: make(chan struct{}, 1), done: make(chan struct{})}
	b.mu.Lock()
	var snap []Pair
	err := b.View(ctx, func(t Txn) error {
		var err error
		snap, err = t.List(prefix)
		return err
	})
	if err == nil {
		w.queue = []Changes{{Reset: true, Pairs: snap, Revision: b.rev}}
		w.wake <- struct{}{}
		b.watchers[w] = struct{}{}
	}
	b.mu.Unlock()
	go func() {
		defer close(out)
		defer func() {
			b.mu.Lock()
			delete(b.watchers, w)
			b.mu.Unlock()
		}()
		if err != nil {
			return
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.done:
				return
			case <-w.wake:
			}
			for _, c := range w.take() {
				select {
				case out <- c:
				case <-ctx.Done():
					return
				case <-w.done:
					return
				}
			}
		}
	}()
	return out
}

// boltWatcher queues the commits for one watch: Update never waits for a
// slow watcher.
type boltWatcher struct {
	prefix   string
	mu       sync.Mutex
	queue    []Changes
	wake     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

func (w *boltWatcher) push(c Changes) {
	w.mu.Lock()
	w.queue = append(w.queue, c)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *boltWatcher) take() []Changes {
	w.mu.Lock()
	defer w.mu.Unlock()
	q := w.queue
	w.queue = nil
	return q
}

func (w *boltWatcher) stop() { w.stopOnce.Do(func() { close(w.done) }) }

// boltTxn is a bbolt transaction; writes records a write transaction's
// changes for the watchers, in order.
type boltTxn struct {
	tx     *bolt.Tx
	writes map[string][]byte // nil value: deleted
	order  []string
}

func (t *boltTxn) Get(key string) ([]byte, error) {
	sp, rest, err := space(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %q", err, key)
	}
	b := t.tx.Bucket([]byte(sp))
	if b == nil {
		return nil, nil
	}
	return bytes.Clone(b.Get([]byte(rest))), nil
}

func (t *boltTxn) List(prefix string) ([]Pair, error) {
	sp, rest, err := space(prefix)
	if err != nil {
		return nil, fmt.Errorf("%w: prefix %q", err, prefix)
	}
	b := t.tx.Bucket([]byte(sp))
	if b == nil {
		return nil, nil
	}
	var out []Pair
	c := b.Cursor()
	for k, v := c.Seek([]byte(rest)); k != nil && bytes.HasPrefix(k, []byte(rest)); k, v = c.Next() {
		if v == nil {
			continue // a nested bucket
		}
		out = append(out, Pair{Key: sp + "/" + string(k), Value: bytes.Clone(v)})
	}
	return out, nil
}

func (t *boltTxn) Put(key string, value []byte) error {
	sp, rest, err := space(key)
	if err != nil {
		return fmt.Errorf("%w: %q", err, key)
	}
	if rest == "" {
		return fmt.Errorf("%w: %q has no name after the space", ErrBadKey, key)
	}
	b, err := t.tx.CreateBucketIfNotExists([]byte(sp))
	if err != nil {
		return err
	}
	if err := b.Put([]byte(rest), value); err != nil {
		return err
	}
	t.note(key, bytes.Clone(value))
	return nil
}

func (t *boltTxn) Delete(key string) error {
	sp, rest, err := space(key)
	if err != nil {
		return fmt.Errorf("%w: %q", err, key)
	}
	b := t.tx.Bucket([]byte(sp))
	if b == nil || b.Get([]byte(rest)) == nil {
		return nil
	}
	if err := b.Delete([]byte(rest)); err != nil {
		return err
	}
	t.note(key, nil)
	return nil
}

func (t *boltTxn) note(key string, v []byte) {
	if t.writes == nil {
		return
	}
	if _, ok := t.writes[key]; !ok {
		t.order = append(t.order, key)
	}
	t.writes[key] = v
}
