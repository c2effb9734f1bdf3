package registry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/onramp-net/onramp/dataplane/registry/etcdtest"
)

// backends returns a fresh store of each back end: bbolt in a temporary
// file, and a real etcd (one member on loopback, started here) under a
// prefix of its own.
func backends(t *testing.T) map[string]Store {
	t.Helper()
	b, err := OpenBolt(filepath.Join(t.TempDir(), "edge.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	out := map[string]Store{"bbolt": b}
	ep := etcdtest.Shared(t)
	e, err := OpenEtcd(context.Background(), EtcdConfig{Endpoints: []string{ep.Client}, Prefix: etcdtest.Prefix(t), RequestTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	out["etcd"] = e
	return out
}

// TestMain stops the shared etcd.
func TestMain(m *testing.M) {
	code := m.Run()
	etcdtest.StopShared()
	os.Exit(code)
}

func put(t *testing.T, s Store, kv ...string) int64 {
	t.Helper()
	rev, err := s.Update(context.Background(), func(tx Txn) error {
		for i := 0; i < len(kv); i += 2 {
			if err := tx.Put(kv[i], []byte(kv[i+1])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// TestTxn: reads see the transaction's own writes, listings are sorted
// and bounded by the prefix, an error from fn writes nothing, and bad keys
// are refused; on both back ends.
func TestTxn(t *testing.T) {
	for name, s := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			put(t, s, "a/2", "two", "a/1", "one", "ab/x", "other space", "a/3", "three")
			_, err := s.Update(ctx, func(tx Txn) error {
				if err := tx.Put("a/4", []byte("four")); err != nil {
					return err
				}
				if err := tx.Delete("a/1"); err != nil {
					return err
				}
				if v, err := tx.Get("a/4"); err != nil || string(v) != "four" {
					return fmt.Errorf("own write: %q %v", v, err)
				}
				if v, err := tx.Get("a/1"); err != nil || v != nil {
					return fmt.Errorf("own delete: %q %v", v, err)
				}
				l, err := tx.List("a/")
				if err != nil {
					return err
				}
				if got := keys(l); !slices.Equal(got, []string{"a/2", "a/3", "a/4"}) {
					return fmt.Errorf("list in txn: %v", got)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			boom := errors.New("boom")
			if _, err := s.Update(ctx, func(tx Txn) error {
				_ = tx.Put("a/5", []byte("five"))
				return boom
			}); !errors.Is(err, boom) {
				t.Fatalf("fn's error: %v", err)
			}
			err = s.View(ctx, func(tx Txn) error {
				l, err := tx.List("a/")
				if err != nil {
					return err
				}
				if got := keys(l); !slices.Equal(got, []string{"a/2", "a/3", "a/4"}) {
					return fmt.Errorf("list after commit: %v (a/5 must not be there)", got)
				}
				l, err = tx.List("a/3")
				if err != nil || len(l) != 1 || string(l[0].Value) != "three" {
					return fmt.Errorf("list of a key prefix: %v %v", l, err)
				}
				if v, err := tx.Get("missing/x"); v != nil || err != nil {
					return fmt.Errorf("missing: %q %v", v, err)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"nospace", "/x", ""} {
				if _, err := s.Update(ctx, func(tx Txn) error { return tx.Put(k, []byte("v")) }); !errors.Is(err, ErrBadKey) {
					t.Errorf("Put(%q): %v, want ErrBadKey", k, err)
				}
			}
		})
	}
}

func keys(ps []Pair) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Key)
	}
	return out
}

// TestConcurrentUpdates plays the edges' contention: 8 writers each
// increment one counter 20 times and take the lowest free slot under a
// prefix (as address allocation does). Every increment counts, and no slot
// is taken twice: the transactions are serializable.
func TestConcurrentUpdates(t *testing.T) {
	for name, s := range backends(t) {
		t.Run(name, func(t *testing.T) {
			const writers, each = 8, 20
			var wg sync.WaitGroup
			errs := make(chan error, writers)
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						_, err := s.Update(context.Background(), func(tx Txn) error {
							v, err := tx.Get("count/n")
							if err != nil {
								return err
							}
							n, _ := strconv.Atoi(string(v))
							if err := tx.Put("count/n", []byte(strconv.Itoa(n+1))); err != nil {
								return err
							}
							used, err := tx.List("slot/")
							if err != nil {
								return err
							}
							taken := map[string]bool{}
							for _, p := range used {
								taken[p.Key] = true
							}
							for slot := 0; ; slot++ {
								k := fmt.Sprintf("slot/%04d", slot)
								if !taken[k] {
									return tx.Put(k, fmt.Appendf(nil, "w%d-%d", w, i))
								}
							}
						})
						if err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			_ = s.View(context.Background(), func(tx Txn) error {
				v, _ := tx.Get("count/n")
				if string(v) != strconv.Itoa(writers*each) {
					t.Errorf("counter %s, want %d: an increment was lost", v, writers*each)
				}
				slots, _ := tx.List("slot/")
				if len(slots) != writers*each {
					t.Errorf("%d slots, want %d: two writers took one slot", len(slots), writers*each)
				}
				return nil
			})
		})
	}
}

// TestMirror: a mirror lists what is there, then follows puts and
// deletes in order; WaitRevision returns once apply ran for the revision
// Update returned.
func TestMirror(t *testing.T) {
	for name, s := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			put(t, s, "m/a", "1", "m/b", "2", "n/x", "elsewhere")
			var mu sync.Mutex
			var seen []Change
			m := NewMirror(ctx, s, "m/", func(cs []Change) {
				mu.Lock()
				seen = append(seen, cs...)
				mu.Unlock()
			})
			if err := m.Synced(ctx); err != nil {
				t.Fatal(err)
			}
			if m.Len() != 2 {
				t.Fatalf("mirror has %d pairs, want 2", m.Len())
			}
			rev := put(t, s, "m/a", "1b", "m/c", "3", "n/y", "elsewhere")
			rev2, err := s.Update(ctx, func(tx Txn) error { return tx.Delete("m/b") })
			if err != nil {
				t.Fatal(err)
			}
			wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
			defer wcancel()
			if err := m.WaitRevision(wctx, max(rev, rev2)); err != nil {
				t.Fatal(err)
			}
			if v, ok := m.Get("m/a"); !ok || string(v) != "1b" {
				t.Fatalf("m/a = %q %v", v, ok)
			}
			if _, ok := m.Get("m/b"); ok {
				t.Fatal("m/b still mirrored after its deletion")
			}
			if _, ok := m.Get("n/y"); ok {
				t.Fatal("a key outside the prefix was mirrored")
			}
			mu.Lock()
			defer mu.Unlock()
			want := []Change{{Key: "m/a", New: []byte("1")}, {Key: "m/b", New: []byte("2")},
				{Key: "m/a", Old: []byte("1"), New: []byte("1b")}, {Key: "m/c", New: []byte("3")}, {Key: "m/b", Old: []byte("2")}}
			if fmt.Sprint(seen) != fmt.Sprint(want) {
				t.Fatalf("changes applied:\n%v\nwant\n%v", seen, want)
			}
		})
	}
}

// TestEtcdOutage: with etcd down, a mirror keeps what it had, a change
// fails with ErrUnavailable after the request timeout, and once etcd is
// back the mirror catches up with what changed meanwhile (here through a
// second client).
func TestEtcdOutage(t *testing.T) {
	m0, err := etcdtest.Start(t.TempDir())
	if err != nil {
		etcdtest.SkipOrFail(t, "etcd: %v", err)
	}
	defer m0.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := EtcdConfig{Endpoints: []string{m0.Client}, RequestTimeout: time.Second, DialTimeout: time.Second}
	e, err := OpenEtcd(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	put(t, e, "o/a", "1", "o/b", "2")
	var mu sync.Mutex
	var removed []string
	mir := NewMirror(ctx, e, "o/", func(cs []Change) {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range cs {
			if c.New == nil {
				removed = append(removed, c.Key)
			}
		}
	})
	if err := mir.Synced(ctx); err != nil {
		t.Fatal(err)
	}
	m0.Stop()
	start := time.Now()
	_, err = e.Update(ctx, func(tx Txn) error { return tx.Put("o/c", []byte("3")) })
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("change with etcd down: %v, want ErrUnavailable", err)
	}
	t.Logf("change refused after %v: %v", time.Since(start).Round(time.Millisecond), err)
	if v, ok := mir.Get("o/a"); !ok || string(v) != "1" || mir.Len() != 2 {
		t.Fatalf("mirror lost what it knew: %q %v, %d pairs", v, ok, mir.Len())
	}
	if err := m0.Restart(); err != nil {
		t.Fatal(err)
	}
	other, err := OpenEtcd(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	rev, err := other.Update(ctx, func(tx Txn) error { return tx.Delete("o/a") })
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
	defer wcancel()
	if err := mir.WaitRevision(wctx, rev); err != nil {
		t.Fatal(err)
	}
	if _, ok := mir.Get("o/a"); ok {
		t.Fatal("mirror missed a deletion made while it was cut off")
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(removed, []string{"o/a"}) {
		t.Fatalf("removals applied: %v", removed)
	}
}

// TestEtcdTooLarge: a transaction beyond etcd's limit fails with
// ErrTooLarge and says what to do, writing nothing.
func TestEtcdTooLarge(t *testing.T) {
	e := backends(t)["etcd"]
	_, err := e.Update(context.Background(), func(tx Txn) error {
		for i := range MaxTxnOps + 1 {
			if err := tx.Put(fmt.Sprintf("big/%d", i), []byte("v")); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("%v, want ErrTooLarge", err)
	}
}
