package registry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// EtcdConfig configures the etcd back end.
type EtcdConfig struct {
	// Endpoints are the cluster members' client URLs
	// (https://host:2379). At least one.
	Endpoints []string
	// Prefix is put before every key, so that several deployments (or
	// other users) share one cluster. Default DefaultEtcdPrefix.
	Prefix string
	// TLS, if set, is used to reach the members (and its certificates to
	// authenticate the edge to them).
	TLS *tls.Config
	// Username and Password, if set, authenticate to etcd.
	Username, Password string
	// DialTimeout bounds the first connection (default 5 s).
	DialTimeout time.Duration
	// RequestTimeout bounds each request that has no deadline of its
	// own (default 5 s): without a quorum a change fails after it.
	RequestTimeout time.Duration
}

// DefaultEtcdPrefix is the key prefix when EtcdConfig.Prefix is empty.
const DefaultEtcdPrefix = "/onramp/"

// MaxTxnOps is what etcd takes in one transaction by default
// (--max-txn-ops): compares and writes each.
const MaxTxnOps = 128

// maxAttempts bounds how often Update runs a transaction that conflicts.
const maxAttempts = 32

// Etcd is the etcd back end.
type Etcd struct {
	cli     *clientv3.Client
	prefix  string
	name    string
	timeout time.Duration
}

// OpenEtcd connects to the cluster and checks that it answers: an edge
// cannot start without knowing the state. Later outages do not stop a
// running edge (see Mirror).
func OpenEtcd(ctx context.Context, cfg EtcdConfig) (*Etcd, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("registry: etcd: no endpoints")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultEtcdPrefix
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	name := fmt.Sprintf("etcd %s prefix %s", strings.Join(cfg.Endpoints, ","), cfg.Prefix)
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		TLS:         cfg.TLS,
		Username:    cfg.Username,
		Password:    cfg.Password,
		DialTimeout: cfg.DialTimeout,
		// The client's own logs (retries, balancer changes) are not for
		// the operator: errors reach them through the edge's.
		Logger:               zap.NewNop(),
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		AutoSyncInterval:     time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("registry: %s: %w", name, err)
	}
	e := &Etcd{cli: cli, prefix: cfg.Prefix, name: name, timeout: cfg.RequestTimeout}
	cctx, cancel := e.bound(ctx)
	defer cancel()
	if _, err := cli.Get(cctx, e.prefix, clientv3.WithCountOnly()); err != nil {
		cli.Close()
		return nil, e.unavailable("connect", err)
	}
	return e, nil
}

// String implements Store.
func (e *Etcd) String() string { return e.name }

// Close implements Store.
func (e *Etcd) Close() error { return e.cli.Close() }

// bound gives ctx the request timeout unless it has a deadline.
func (e *Etcd) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, e.timeout)
}

// unavailable wraps a client error: the caller's own cancellation as it
// is, anything else as ErrUnavailable with what etcd said.
func (e *Etcd) unavailable(op string, err error) error {
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("registry: %s: %s: %w", e.name, op, err)
	}
	var hint string
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, rpctypes.ErrTimeout), errors.Is(err, rpctypes.ErrNoLeader),
		errors.Is(err, rpctypes.ErrGRPCNoLeader), errors.Is(err, rpctypes.ErrGRPCTimeout), strings.Contains(err.Error(), "no leader"),
		// The deadline as the server or the balancer reports it: a gRPC
		// status (code Unknown or DeadlineExceeded) that only says so.
		strings.Contains(err.Error(), context.DeadlineExceeded.Error()):
		hint = " (no answer in time: is a majority of the etcd members up and reachable?)"
	}
	return fmt.Errorf("registry: %s: %s: %w: %v%s", e.name, op, ErrUnavailable, err, hint)
}

// View implements Store: linearizable reads at one revision.
func (e *Etcd) View(ctx context.Context, fn func(Txn) error) error {
	// Without a leader, fail at once rather than at the timeout.
	ctx, cancel := e.bound(clientv3.WithRequireLeader(ctx))
	defer cancel()
	return fn(&etcdTxn{e: e, ctx: ctx})
}

// Update implements Store. The transaction's reads are compared in the
// etcd transaction that writes: a key read must still have the revision
// it had (or still be missing), and no key under a listed prefix may have
// changed or appeared since. A removal under a listed prefix is not
// detected; the records of this project only free things when removed. If
// the comparison fails, fn runs again, up to 32 times.
func (e *Etcd) Update(ctx context.Context, fn func(Txn) error) (int64, error) {
	ctx, cancel := e.bound(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for attempt := range maxAttempts {
		t := &etcdTxn{e: e, ctx: ctx, writable: true, reads: map[string]int64{}, writes: map[string]*[]byte{}}
		if err := fn(t); err != nil {
			return 0, err
		}
		if len(t.order) == 0 {
			return 0, nil
		}
		cmps, ops := t.commit()
		if len(cmps) > MaxTxnOps || len(ops) > MaxTxnOps {
			return 0, fmt.Errorf("registry: %s: %w: %d writes and %d comparisons, etcd takes at most %d of each (--max-txn-ops): change fewer records at once",
				e.name, ErrTooLarge, len(ops), len(cmps), MaxTxnOps)
		}
		resp, err := e.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err != nil {
			return 0, e.unavailable("commit (the change may or may not have been made)", err)
		}
		if resp.Succeeded {
			return resp.Header.Revision, nil
		}
		// Another writer changed what fn read: back off a little, at
		// random, and run it again on the new state.
		d := time.Duration(rand.Int64N(int64(time.Millisecond) << min(attempt, 6)))
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return 0, e.unavailable("commit", ctx.Err())
		}
	}
	return 0, fmt.Errorf("registry: %s: %w (%d attempts)", e.name, ErrConflict, maxAttempts)
}

// etcdTxn reads at one revision (that of its first read) and buffers its
// writes until commit.
type etcdTxn struct {
	e        *Etcd
	ctx      context.Context
	writable bool
	rev      int64
	reads    map[string]int64 // key -> mod revision seen, 0 if missing
	lists    []string
	writes   map[string]*[]byte // nil: deleted
	order    []string
}

func (t *etcdTxn) get(key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	if t.rev != 0 {
		opts = append(opts, clientv3.WithRev(t.rev))
	}
	resp, err := t.e.cli.Get(t.ctx, t.e.prefix+key, opts...)
	if err != nil {
		return nil, t.e.unavailable("read", err)
	}
	if t.rev == 0 {
		t.rev = resp.Header.Revision
	}
	return resp, nil
}

func (t *etcdTxn) Get(key string) ([]byte, error) {
	if _, _, err := space(key); err != nil {
		return nil, fmt.Errorf("%w: %q", err, key)
	}
	if v, ok := t.writes[key]; ok {
		if v == nil {
			return nil, nil
		}
		return slices.Clone(*v), nil
	}
	resp, err := t.get(key)
	if err != nil {
		return nil, err
	}
	var mod int64
	var v []byte
	if len(resp.Kvs) > 0 {
		mod, v = resp.Kvs[0].ModRevision, value(resp.Kvs[0])
	}
	if t.reads != nil {
		if _, seen := t.reads[key]; !seen {
			t.reads[key] = mod
		}
	}
	return v, nil
}

func (t *etcdTxn) List(prefix string) ([]Pair, error) {
	if _, _, err := space(prefix); err != nil {
		return nil, fmt.Errorf("%w: prefix %q", err, prefix)
	}
	resp, err := t.get(prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	if t.reads != nil {
		t.lists = append(t.lists, prefix)
	}
	m := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		m[strings.TrimPrefix(string(kv.Key), t.e.prefix)] = value(kv)
	}
	for _, k := range t.order {
		if strings.HasPrefix(k, prefix) {
			if v := t.writes[k]; v == nil {
				delete(m, k)
			} else {
				m[k] = slices.Clone(*v)
			}
		}
	}
	out := make([]Pair, 0, len(m))
	for k, v := range m {
		out = append(out, Pair{Key: k, Value: v})
	}
	slices.SortFunc(out, func(a, b Pair) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

func (t *etcdTxn) Put(key string, v []byte) error {
	if !t.writable {
		return errors.New("registry: write in a read-only transaction")
	}
	if _, rest, err := space(key); err != nil || rest == "" {
		return fmt.Errorf("%w: %q", ErrBadKey, key)
	}
	c := slices.Clone(v)
	if c == nil {
		c = []byte{}
	}
	t.note(key, &c)
	return nil
}

func (t *etcdTxn) Delete(key string) error {
	if !t.writable {
		return errors.New("registry: write in a read-only transaction")
	}
	if _, _, err := space(key); err != nil {
		return fmt.Errorf("%w: %q", err, key)
	}
	t.note(key, nil)
	return nil
}

func (t *etcdTxn) note(key string, v *[]byte) {
	if _, ok := t.writes[key]; !ok {
		t.order = append(t.order, key)
	}
	t.writes[key] = v
}

// commit returns the comparisons that hold if nothing read changed, and
// the writes.
func (t *etcdTxn) commit() ([]clientv3.Cmp, []clientv3.Op) {
	var cmps []clientv3.Cmp
	for _, p := range t.lists {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(t.e.prefix+p), "<", t.rev+1).WithPrefix())
	}
	keys := make([]string, 0, len(t.reads))
	for k := range t.reads {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if slices.ContainsFunc(t.lists, func(p string) bool { return strings.HasPrefix(k, p) }) {
			continue // the listing's comparison covers it
		}
		if mod := t.reads[k]; mod == 0 {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(t.e.prefix+k), "=", 0))
		} else {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(t.e.prefix+k), "=", mod))
		}
	}
	ops := make([]clientv3.Op, 0, len(t.order))
	for _, k := range t.order {
		if v := t.writes[k]; v == nil {
			ops = append(ops, clientv3.OpDelete(t.e.prefix+k))
		} else {
			ops = append(ops, clientv3.OpPut(t.e.prefix+k, string(*v)))
		}
	}
	return cmps, ops
}

// value returns a stored value, never nil (nil means deleted in Changes).
func value(kv *mvccpb.KeyValue) []byte {
	if kv.Value == nil {
		return []byte{}
	}
	return slices.Clone(kv.Value)
}

// Watch implements Store. It lists the prefix, then watches from the next
// revision; when the watch fails (history compacted, the member lost its
// leader), it lists again, backing off while etcd does not answer. The
// consumer keeps what it has meanwhile.
func (e *Etcd) Watch(ctx context.Context, prefix string) <-chan Changes {
	out := make(chan Changes)
	go func() {
		defer close(out)
		backoff := 100 * time.Millisecond
		for ctx.Err() == nil {
			gctx, cancel := e.bound(ctx)
			resp, err := e.cli.Get(gctx, e.prefix+prefix, clientv3.WithPrefix())
			cancel()
			if err != nil {
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
					return
				}
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			backoff = 100 * time.Millisecond
			snap := Changes{Reset: true, Revision: resp.Header.Revision}
			for _, kv := range resp.Kvs {
				snap.Pairs = append(snap.Pairs, Pair{Key: strings.TrimPrefix(string(kv.Key), e.prefix), Value: value(kv)})
			}
			select {
			case out <- snap:
			case <-ctx.Done():
				return
			}
			wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
			wch := e.cli.Watch(wctx, e.prefix+prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
			for wr := range wch {
				if wr.Err() != nil || wr.Canceled {
					break
				}
				c := Changes{Revision: wr.Header.Revision}
				for _, ev := range wr.Events {
					p := Pair{Key: strings.TrimPrefix(string(ev.Kv.Key), e.prefix)}
					if ev.Type == clientv3.EventTypePut {
						p.Value = value(ev.Kv)
					}
					c.Revision = max(c.Revision, ev.Kv.ModRevision)
					c.Pairs = append(c.Pairs, p)
				}
				if len(c.Pairs) == 0 {
					continue
				}
				select {
				case out <- c:
				case <-ctx.Done():
					wcancel()
					return
				}
			}
			wcancel()
		}
	}()
	return out
}
