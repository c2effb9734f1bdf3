package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/onramp-net/onramp/dataplane/registry"
	"github.com/onramp-net/onramp/l3router"
	"github.com/onramp-net/onramp/l3router/l3config"
)

// Sentinel errors of the store and the hub, wrapped with what is wrong:
// test with errors.Is.
var (
	// ErrNotFound means no peer has the name (or not of that kind).
	ErrNotFound = errors.New("not found")
	// ErrExists means a client or connector already has the name or the
	// public key.
	ErrExists = errors.New("already exists")
	// ErrInvalid means a name, group, key or subnet breaks a rule.
	ErrInvalid = errors.New("invalid")
	// ErrPoolExhausted means a pool has no free address left.
	ErrPoolExhausted = errors.New("address pool exhausted")
	// ErrOverlap means a subnet overlaps a pool, another connector's
	// subnet or a peer's address. It is the router's sentinel.
	ErrOverlap = l3router.ErrOverlap
	// ErrCorrupt means a stored record is not what this code writes.
	ErrCorrupt = errors.New("corrupt L3 store")
)

// MaxNameLength bounds peer and group names.
const MaxNameLength = 63

// Pools are the virtual address pools. The first address of each is the
// router's own; peers get the following ones.
type Pools struct {
	IPv4, IPv6 netip.Prefix
}

// Router returns the router's own addresses: the first of each pool.
func (p Pools) Router() (v4, v6 netip.Addr) {
	return p.IPv4.Addr().Next(), p.IPv6.Addr().Next()
}

// Prefixes returns the two pools.
func (p Pools) Prefixes() []netip.Prefix { return []netip.Prefix{p.IPv4, p.IPv6} }

func (p Pools) check() error {
	if !p.IPv4.IsValid() || !p.IPv4.Addr().Is4() || p.IPv4 != p.IPv4.Masked() || p.IPv4.Bits() > 30 {
		return fmt.Errorf("ipv4 pool %v: want a masked IPv4 prefix of /30 or shorter: %w", p.IPv4, ErrInvalid)
	}
	if !p.IPv6.IsValid() || !p.IPv6.Addr().Is6() || p.IPv6.Addr().Is4In6() || p.IPv6 != p.IPv6.Masked() || p.IPv6.Bits() > 126 {
		return fmt.Errorf("ipv6 pool %v: want a masked IPv6 prefix of /126 or shorter: %w", p.IPv6, ErrInvalid)
	}
	return nil
}

// Peer is a client or a connector the edge knows.
type Peer struct {
	Name string            `json:"name"`
	Kind l3router.PeerKind `json:"kind"`
	// PublicKey is the peer's WireGuard public key. The edge never has a
	// client's or a connector's private key: each makes its own.
	PublicKey l3config.Key `json:"public_key"`
	// KeyFile is where a connector keeps its private key on its host
	// (connector l3 init --key): the edge writes it into the l3.yml it
	// prints, and nothing else.
	KeyFile string `json:"key_file,omitempty"`
	// Address4 and Address6 are the peer's virtual addresses from the
	// pools.
	Address4 netip.Addr `json:"address4"`
	Address6 netip.Addr `json:"address6"`
	// Groups are the ACL groups of a client.
	Groups []string `json:"groups,omitempty"`
	// Subnets are the private subnets a connector advertises.
	Subnets []netip.Prefix `json:"subnets,omitempty"`
	Created time.Time      `json:"created"`
}

// Addresses returns the peer's virtual addresses as host prefixes.
func (p *Peer) Addresses() []netip.Prefix {
	var out []netip.Prefix
	for _, a := range []netip.Addr{p.Address4, p.Address6} {
		if a.IsValid() {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out
}

// Routes returns what the peer owns on the edge router, which is also its
// allowed_ip list on the edge's WireGuard device: its virtual addresses
// and, for a connector, its subnets.
func (p *Peer) Routes() []netip.Prefix {
	return append(p.Addresses(), p.Subnets...)
}

// ValidName checks a peer or group name: 1 to 63 characters of a-z, 0-9
// and '-' (the tunnel names' rule).
func ValidName(what, name string) error {
	if name == "" {
		return fmt.Errorf("%s name: empty: %w", what, ErrInvalid)
	}
	if len(name) > MaxNameLength {
		return fmt.Errorf("%s name %q: %d characters, want at most %d: %w", what, name, len(name), MaxNameLength, ErrInvalid)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return fmt.Errorf("%s name %q: character %q at %d, want a-z, 0-9 or '-': %w", what, name, c, i, ErrInvalid)
		}
	}
	return nil
}

// Store keeps the L3 on-ramp's state in spaces of the edge's registry
// (a bbolt file, or etcd shared by several edges): the edge's WireGuard
// key, the clients and connectors with their public keys and virtual
// addresses, and the addresses of removed ones. It is safe for concurrent
// use; the registry's transactions serialize the writes, also between
// edges (no two peers get one address).
//
//	l3_meta/private_key   the edge's private key (32 bytes)
//	l3_peers/NAME         JSON peer record
//	l3_released/ADDRESS   JSON release record (address: 4 or 16 bytes)
//
// Clients and connectors share one namespace, the router's.
//
// A removed peer's addresses are not given to a new peer until the reuse
// delay has passed since the removal: the LAN hosts behind connectors know
// peers by address (firewall rules, logs, open connections, caches), and
// would take the newcomer for the old peer.
type Store struct {
	reg        registry.Store
	pools      Pools
	reuseDelay time.Duration
	now        func() time.Time

	mirror *Mirror // the mirror changes wait for, once one runs
}

const (
	keyPrivate     = "l3_meta/private_key"
	prefixPeers    = "l3_peers/"
	prefixReleased = "l3_released/"
)

// released is the record of a removed peer's address.
type released struct {
	V    int               `json:"v"`
	At   time.Time         `json:"released"`
	Name string            `json:"name"` // of the peer that had it
	Kind l3router.PeerKind `json:"kind"`
}

// record is a stored peer; V is the record version.
type record struct {
	V int `json:"v"`
	Peer
}

const recordVersion = 1

// OpenStore creates the L3 buckets in db if needed. New addresses come
// from pools; a removed peer's addresses are held back for reuseDelay
// (l3.address_reuse_delay; 0: given out again at once).
func OpenStore(reg registry.Store, pools Pools, reuseDelay time.Duration) (*Store, error) {
	if err := pools.check(); err != nil {
		return nil, err
	}
	if reuseDelay < 0 {
		return nil, fmt.Errorf("address reuse delay %v: negative: %w", reuseDelay, ErrInvalid)
	}
	return &Store{reg: reg, pools: pools, reuseDelay: reuseDelay, now: time.Now}, nil
}

// view runs fn in a read transaction of the registry.
func (s *Store) view(fn func(registry.Txn) error) error {
	return s.reg.View(context.Background(), fn)
}

// update runs fn in a write transaction and, once it committed, waits
// until the mirror (if one runs) has applied it: a peer added is live on
// this edge's hub, a peer removed is cut, when it returns.
func (s *Store) update(fn func(registry.Txn) error) error {
	rev, err := s.reg.Update(context.Background(), fn)
	if err != nil || rev == 0 || s.mirror == nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), mirrorWait)
	defer cancel()
	if err := s.mirror.r.Mirror().WaitRevision(ctx, rev); err != nil {
		return fmt.Errorf("the change is made but this edge has not applied it yet: %w", err)
	}
	return nil
}

// mirrorWait bounds how long a change waits for the mirror.
var mirrorWait = 10 * time.Second

// DropPrivateKeys removes the private keys that stores of earlier edges
// kept for connectors whose key the edge made, and returns the names of
// those connectors. The edge runs it at open: from then on it never holds
// a connector's private key. The connectors keep working with the key in
// their l3.yml; their records get no key file (the edge prints its
// default one in their l3.yml from then on).
func (s *Store) DropPrivateKeys() ([]string, error) {
	// Look first: most opens find nothing, and need no write.
	var stale int
	err := s.view(func(tx registry.Txn) error {
		recs, err := tx.List(prefixPeers)
		for _, r := range recs {
			if hasPrivateKey(r.Value) != nil {
				stale++
			}
		}
		return err
	})
	if err != nil || stale == 0 {
		return nil, err
	}
	// In batches: a transaction on etcd takes at most 128 writes.
	var names []string
	for {
		var batch []string
		more := false
		err = s.update(func(tx registry.Txn) error {
			batch, more = batch[:0], false
			recs, err := tx.List(prefixPeers)
			if err != nil {
				return err
			}
			// Rewritten from the parsed record, which has no private
			// key field (clients' records carried a zero one).
			n := 0
			for _, r := range recs {
				pk := hasPrivateKey(r.Value)
				if pk == nil {
					continue
				}
				if n == dropBatch {
					more = true
					break
				}
				n++
				name := strings.TrimPrefix(r.Key, prefixPeers)
				if !pk.IsZero() {
					batch = append(batch, name)
				}
				p, err := parse(name, r.Value)
				if err != nil {
					return err
				}
				v, err := json.Marshal(record{V: recordVersion, Peer: p})
				if err != nil {
					return err
				}
				if err := tx.Put(r.Key, v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("l3 store: drop connectors' private keys: %w", err)
		}
		names = append(names, batch...)
		if !more {
			return names, nil
		}
	}
}

// dropBatch is how many records DropPrivateKeys rewrites a transaction.
const dropBatch = 100

// hasPrivateKey returns the private key field of a stored record written
// by an earlier edge, or nil if it has none.
func hasPrivateKey(v []byte) *l3config.Key {
	var legacy struct {
		PrivateKey *l3config.Key `json:"private_key"`
	}
	if json.Unmarshal(v, &legacy) != nil {
		return nil
	}
	return legacy.PrivateKey
}

// Pools returns the pools the store allocates from.
func (s *Store) Pools() Pools { return s.pools }

// EdgeKey returns the edge's WireGuard private key, generating and storing
// it on first use.
func (s *Store) EdgeKey() (l3config.Key, error) {
	var k l3config.Key
	_, err := s.reg.Update(context.Background(), func(tx registry.Txn) error {
		v, err := tx.Get(keyPrivate)
		if err != nil {
			return err
		}
		if v != nil {
			if len(v) != l3config.KeySize {
				return fmt.Errorf("%w: edge private key of %d bytes", ErrCorrupt, len(v))
			}
			copy(k[:], v)
			return nil
		}
		if k, err = l3config.GeneratePrivateKey(); err != nil {
			return err
		}
		return tx.Put(keyPrivate, k[:])
	})
	if err != nil {
		return l3config.Key{}, fmt.Errorf("l3 store: edge key: %w", err)
	}
	return k, nil
}

// Add records a new client or connector: p's Name, Kind, PublicKey,
// Groups (clients), Subnets and KeyFile (connectors).
// It allocates the virtual addresses, sets Created and returns the record.
//
// The addresses are the lowest free ones of the pools, skipping those of
// peers removed less than the reuse delay ago.
//
// It refuses, with an error naming the reason, a bad name, group or
// subnet (ErrInvalid), a name or public key already in use (ErrExists), a
// subnet overlapping a pool, another connector's subnet or a peer's
// address (ErrOverlap), and a full pool (ErrPoolExhausted).
func (s *Store) Add(p Peer) (Peer, error) {
	ps, err := s.AddMany([]Peer{p})
	if err != nil {
		return Peer{}, err
	}
	return ps[0], nil
}

// AddMany records new clients and connectors as Add does, in one
// transaction (on etcd, which takes at most 128 writes in one, about 100
// peers at a time; more fail with registry.ErrTooLarge): all of them, or none and the error of the first refused
// (a name or key may not be given twice in ps either). It returns the
// records in the order of ps. Add reads every record to check one peer;
// AddMany reads them once for all, so that thousands of peers (an import,
// a test at scale) take seconds, not minutes.
func (s *Store) AddMany(ps []Peer) ([]Peer, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	out := make([]Peer, len(ps))
	for i, p := range ps {
		if err := s.check(&p); err != nil {
			return nil, fmt.Errorf("l3 store: add %v %q: %w", p.Kind, p.Name, err)
		}
		out[i] = p
	}
	now := s.now()
	created := time.Unix(0, now.UnixNano()).UTC()
	at := &out[0] // the peer being added, for the error
	err := s.update(func(tx registry.Txn) error {
		at = &out[0]
		var edgePub l3config.Key
		if k, err := tx.Get(keyPrivate); err != nil {
			return err
		} else if len(k) == l3config.KeySize {
			edgePub = l3config.Key(k).PublicKey()
		}
		peers, err := list(tx)
		if err != nil {
			return err
		}
		addrs := map[netip.Addr]bool{}
		keys := map[l3config.Key]*Peer{}
		names := map[string]struct{}{}
		var subnets []netip.Prefix
		for i := range peers {
			o := &peers[i]
			addrs[o.Address4], addrs[o.Address6] = true, true
			keys[o.PublicKey] = o
			names[o.Name] = struct{}{}
			subnets = append(subnets, o.Subnets...)
		}
		// Subnets never overlap the pools when added, but the pools in
		// the edge config may have changed since.
		used := func(a netip.Addr) bool {
			return addrs[a] || slices.ContainsFunc(subnets, func(s netip.Prefix) bool { return s.Contains(a) })
		}
		held, err := s.held(tx, now)
		if err != nil {
			return err
		}
		var last4, last6 netip.Addr // given in this transaction: no lower address is free
		for i := range out {
			p := &out[i]
			at = p
			if _, taken := names[p.Name]; taken {
				return fmt.Errorf("name %q is taken by a client or connector: %w", p.Name, ErrExists)
			}
			if !edgePub.IsZero() && edgePub == p.PublicKey {
				return fmt.Errorf("public key %v is the edge's own: %w", p.PublicKey, ErrInvalid)
			}
			if o := keys[p.PublicKey]; o != nil {
				return fmt.Errorf("public key %v is already %v %q's: %w", p.PublicKey, o.Kind, o.Name, ErrExists)
			}
			// A new connector's subnets against every peer's
			// addresses and subnets; anyone's address against the
			// subnets of the connectors added before it here.
			if len(p.Subnets) > 0 {
				for j := range peers {
					if err := overlaps(p.Subnets, &peers[j]); err != nil {
						return err
					}
				}
				for _, o := range out[:i] {
					if err := overlaps(p.Subnets, &o); err != nil {
						return err
					}
				}
			}
			if p.Address4, err = s.allocate(s.pools.IPv4, last4, used, held); err != nil {
				return err
			}
			if p.Address6, err = s.allocate(s.pools.IPv6, last6, used, held); err != nil {
				return err
			}
			last4, last6 = p.Address4, p.Address6
			p.Created = created
			v, err := json.Marshal(record{V: recordVersion, Peer: *p})
			if err != nil {
				return err
			}
			if err := tx.Put(prefixPeers+p.Name, v); err != nil {
				return err
			}
			names[p.Name] = struct{}{}
			addrs[p.Address4], addrs[p.Address6] = true, true
			keys[p.PublicKey] = p
			subnets = append(subnets, p.Subnets...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("l3 store: add %v %q: %w", at.Kind, at.Name, err)
	}
	return out, nil
}

// check validates the fields of a new peer that need no other record.
func (s *Store) check(p *Peer) error {
	if err := ValidName(p.Kind.String(), p.Name); err != nil {
		return err
	}
	if p.PublicKey.IsZero() {
		return fmt.Errorf("public key: missing: %w", ErrInvalid)
	}
	switch p.Kind {
	case l3router.KindClient:
		if len(p.Subnets) > 0 {
			return fmt.Errorf("subnets %v: a client advertises no subnets: %w", p.Subnets, ErrInvalid)
		}
		if p.KeyFile != "" {
			return fmt.Errorf("key file %q: only connectors have one: %w", p.KeyFile, ErrInvalid)
		}
	case l3router.KindConnector:
		if len(p.Subnets) == 0 {
			return fmt.Errorf("subnets: a connector advertises at least one: %w", ErrInvalid)
		}
		if len(p.Groups) > 0 {
			return fmt.Errorf("groups %v: only clients have groups: %w", p.Groups, ErrInvalid)
		}
		if err := checkKeyFile(p.KeyFile); err != nil {
			return err
		}
	default:
		return fmt.Errorf("kind %v: want client or connector: %w", p.Kind, ErrInvalid)
	}
	for _, g := range p.Groups {
		if err := ValidName("group", g); err != nil {
			return err
		}
	}
	p.Groups = slices.Compact(slices.Sorted(slices.Values(p.Groups)))
	for i, sn := range p.Subnets {
		if err := CheckSubnet(sn); err != nil {
			return fmt.Errorf("subnet %d: %w", i+1, err)
		}
		for j := range i {
			if sn.Overlaps(p.Subnets[j]) {
				return fmt.Errorf("subnet %v overlaps subnet %v of the same connector: %w", sn, p.Subnets[j], ErrInvalid)
			}
		}
		for _, pool := range s.pools.Prefixes() {
			if sn.Overlaps(pool) {
				return fmt.Errorf("subnet %v overlaps the client pool %v (l3.pools): %w", sn, pool, ErrOverlap)
			}
		}
	}
	return nil
}

// MaxKeyFileLength bounds a connector's key file path.
const MaxKeyFileLength = 1024

// checkKeyFile checks a connector's key file path: it goes into the
// l3.yml the edge prints, so it is printable text of bounded length.
func checkKeyFile(path string) error {
	if path == "" {
		return fmt.Errorf("key file: missing (where connector l3 init --key wrote the connector's private key): %w", ErrInvalid)
	}
	if len(path) > MaxKeyFileLength {
		return fmt.Errorf("key file: %d bytes, want at most %d: %w", len(path), MaxKeyFileLength, ErrInvalid)
	}
	if !utf8.ValidString(path) || strings.ContainsFunc(path, unicode.IsControl) {
		return fmt.Errorf("key file %q: control characters or invalid UTF-8: %w", path, ErrInvalid)
	}
	return nil
}

// CheckSubnet checks a subnet a connector advertises: a valid, masked
// prefix of unicast addresses.
func CheckSubnet(p netip.Prefix) error {
	a := p.Addr()
	switch {
	case !p.IsValid():
		return fmt.Errorf("invalid prefix: %w", ErrInvalid)
	case a.Is4In6():
		return fmt.Errorf("%v: IPv4-mapped IPv6, write it as IPv4: %w", p, ErrInvalid)
	case a.Zone() != "":
		return fmt.Errorf("%v: has a zone: %w", p, ErrInvalid)
	case p != p.Masked():
		return fmt.Errorf("%v: host bits set (did you mean %v?): %w", p, p.Masked(), ErrInvalid)
	case p.Bits() == 0:
		return fmt.Errorf("%v: a default route is not a subnet: %w", p, ErrInvalid)
	case a.IsLoopback() || a.IsMulticast() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast():
		return fmt.Errorf("%v: loopback, link-local or multicast addresses are not routed through the edge: %w", p, ErrInvalid)
	}
	return nil
}

// overlaps refuses subnets that overlap o's subnets or addresses.
func overlaps(subnets []netip.Prefix, o *Peer) error {
	for _, sn := range subnets {
		for _, os := range o.Subnets {
			// The same subnet from two connectors is a failover pair:
			// the hub routes it to one at a time. A subnet inside or
			// around another connector's is refused.
			if sn.Overlaps(os) && sn != os {
				return fmt.Errorf("subnet %v overlaps subnet %v of connector %q (connectors may share a subnet for failover only when it is the same prefix): %w", sn, os, o.Name, ErrOverlap)
			}
		}
		for _, a := range o.Addresses() {
			if sn.Overlaps(a) {
				return fmt.Errorf("subnet %v contains the address %v of %v %q: %w", sn, a.Addr(), o.Kind, o.Name, ErrOverlap)
			}
		}
	}
	return nil
}

// held returns the addresses of removed peers still held back at now,
// with the time each is free again, and forgets those whose delay is over.
func (s *Store) held(tx registry.Txn, now time.Time) (map[netip.Addr]time.Time, error) {
	recs, err := tx.List(prefixReleased)
	if err != nil {
		return nil, err
	}
	held := map[netip.Addr]time.Time{}
	deleted := 0
	for _, rec := range recs {
		k := strings.TrimPrefix(rec.Key, prefixReleased)
		a, ok := netip.AddrFromSlice([]byte(k))
		var r released
		if !ok || json.Unmarshal(rec.Value, &r) != nil || r.V != recordVersion {
			return nil, fmt.Errorf("%w: released address record %x", ErrCorrupt, k)
		}
		if free := r.At.Add(s.reuseDelay); now.Before(free) {
			held[a] = free
		} else if deleted < maxExpiredPerTxn {
			// Forgotten a few at a time: a transaction on etcd takes
			// at most 128 writes (registry.MaxTxnOps), and a mass
			// removal a day ago must not make every add too large.
			if err := tx.Delete(rec.Key); err != nil {
				return nil, err
			}
			deleted++
		}
	}
	return held, nil
}

// maxExpiredPerTxn bounds the expired release records one transaction
// deletes; the rest are ignored (their delay is over) and go later.
const maxExpiredPerTxn = 16

// release records that p's addresses were freed at now.
func release(tx registry.Txn, p *Peer, now time.Time) error {
	v, err := json.Marshal(released{V: recordVersion, At: now.UTC(), Name: p.Name, Kind: p.Kind})
	if err != nil {
		return err
	}
	for _, a := range []netip.Addr{p.Address4, p.Address6} {
		if a.IsValid() {
			if err := tx.Put(prefixReleased+string(a.AsSlice()), v); err != nil {
				return err
			}
		}
	}
	return nil
}

// allocate returns the lowest address of pool above after (if valid)
// that is neither used nor held, skipping the network address, the
// router's (the first) and, in IPv4, the last.
func (s *Store) allocate(pool netip.Prefix, after netip.Addr, used func(netip.Addr) bool, held map[netip.Addr]time.Time) (netip.Addr, error) {
	last := netip.Addr{}
	if pool.Addr().Is4() {
		b := pool.Addr().As4()
		n := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		n |= 1<<(32-pool.Bits()) - 1
		last = netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
	}
	var nheld int
	var first time.Time     // when the first held address is free again
	a := pool.Addr().Next() // the router's
	if after.IsValid() && pool.Contains(after) && a.Less(after) {
		a = after
	}
	for a = a.Next(); a.IsValid() && pool.Contains(a) && a != last; a = a.Next() {
		if used(a) {
			continue
		}
		if free, ok := held[a]; ok {
			if nheld++; first.IsZero() || free.Before(first) {
				first = free
			}
			continue
		}
		return a, nil
	}
	fam := "ipv6"
	if pool.Addr().Is4() {
		fam = "ipv4"
	}
	if nheld > 0 {
		return netip.Addr{}, fmt.Errorf("pool %v has no free address left: %d more are held back for l3.address_reuse_delay (%v) after their "+
			"clients or connectors were removed, so that no new peer is taken for an old one; the first is free at %s: wait, "+
			"remove a client or connector, widen l3.pools.%s or shorten l3.address_reuse_delay in the edge config: %w",
			pool, nheld, s.reuseDelay, first.UTC().Format(time.RFC3339), fam, ErrPoolExhausted)
	}
	return netip.Addr{}, fmt.Errorf("pool %v has no free address left: remove a client or connector, or widen l3.pools.%s in the edge config: %w", pool, fam, ErrPoolExhausted)
}

// Get returns the peer named name.
func (s *Store) Get(name string) (Peer, error) {
	var p Peer
	err := s.view(func(tx registry.Txn) error {
		v, err := tx.Get(prefixPeers + name)
		if err != nil {
			return err
		}
		if v == nil {
			return fmt.Errorf("no client or connector is named %q: %w", name, ErrNotFound)
		}
		p, err = parse(name, v)
		return err
	})
	if err != nil {
		return Peer{}, fmt.Errorf("l3 store: %w", err)
	}
	return p, nil
}

// List returns every client and connector, sorted by name.
func (s *Store) List() ([]Peer, error) {
	var peers []Peer
	err := s.view(func(tx registry.Txn) error {
		var err error
		peers, err = list(tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("l3 store: list: %w", err)
	}
	return peers, nil
}

func list(tx registry.Txn) ([]Peer, error) {
	recs, err := tx.List(prefixPeers)
	if err != nil {
		return nil, err
	}
	peers := make([]Peer, 0, len(recs))
	for _, r := range recs {
		p, err := parse(strings.TrimPrefix(r.Key, prefixPeers), r.Value)
		if err != nil {
			return nil, err
		}
		peers = append(peers, p)
	}
	return peers, nil
}

func parse(name string, v []byte) (Peer, error) {
	var r record
	if err := json.Unmarshal(v, &r); err != nil || r.V != recordVersion || r.Name != name {
		return Peer{}, fmt.Errorf("%w: record %q (version %d): %v", ErrCorrupt, name, r.V, err)
	}
	return r.Peer, nil
}

// Remove deletes the peer named name, which must be of the given kind, and
// returns it. Its addresses are free again after the reuse delay.
func (s *Store) Remove(kind l3router.PeerKind, name string) (Peer, error) {
	return s.remove(kind, name, true)
}

// Discard deletes a peer that was never live (an Add the hub then
// refused): its addresses are free again at once.
func (s *Store) Discard(kind l3router.PeerKind, name string) (Peer, error) {
	return s.remove(kind, name, false)
}

func (s *Store) remove(kind l3router.PeerKind, name string, hold bool) (Peer, error) {
	var p Peer
	err := s.update(func(tx registry.Txn) error {
		v, err := tx.Get(prefixPeers + name)
		if err != nil {
			return err
		}
		if v == nil {
			return fmt.Errorf("no %v is named %q: %w", kind, name, ErrNotFound)
		}
		if p, err = parse(name, v); err != nil {
			return err
		}
		if p.Kind != kind {
			return fmt.Errorf("%q is a %v, not a %v: %w", name, p.Kind, kind, ErrNotFound)
		}
		if hold {
			if err := release(tx, &p, s.now()); err != nil {
				return err
			}
		}
		return tx.Delete(prefixPeers + name)
	})
	if err != nil {
		return Peer{}, fmt.Errorf("l3 store: remove %v %q: %w", kind, name, err)
	}
	return p, nil
}

// Subnets returns the subnets of every connector but the one named except,
// sorted and each once: what a connector routes through the edge for site
// to site, and (with except empty) what clients route. A subnet the
// excepted connector advertises itself is left out even when its failover
// partner advertises it too: the connector reaches it directly.
func Subnets(peers []Peer, except string) []netip.Prefix {
	var own []netip.Prefix
	for _, p := range peers {
		if p.Kind == l3router.KindConnector && p.Name == except {
			own = p.Subnets
		}
	}
	var out []netip.Prefix
	for _, p := range peers {
		if p.Kind == l3router.KindConnector && p.Name != except {
			for _, s := range p.Subnets {
				if !slices.Contains(own, s) {
					out = append(out, s)
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out)
}

// String describes a peer for logs: kind, name and addresses.
func (p *Peer) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v %s (%v, %v", p.Kind, p.Name, p.Address4, p.Address6)
	for _, s := range p.Subnets {
		fmt.Fprintf(&b, ", %v", s)
	}
	b.WriteString(")")
	return b.String()
}
