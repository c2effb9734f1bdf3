package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onramp-net/onramp/dataplane/registry"
	"github.com/onramp-net/onramp/l3router"
	"github.com/onramp-net/onramp/l3router/l3config"
)

// Test pools: inside 198.18.0.0/15 and fd00::/8.
var testPools = Pools{IPv4: netip.MustParsePrefix("198.18.96.0/20"), IPv6: netip.MustParsePrefix("fd00:96::/48")}

func openDB(t *testing.T, path string) *registry.Bolt {
	t.Helper()
	db, err := registry.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// testReuseDelay is the stores' address reuse delay in the tests.
const testReuseDelay = 24 * time.Hour

func openTestStore(t *testing.T, pools Pools) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "edge.db")
	db := openDB(t, path)
	t.Cleanup(func() { db.Close() })
	s, err := OpenStore(db, pools, testReuseDelay)
	if err != nil {
		t.Fatal(err)
	}
	return s, path
}

// fakeClock is a store's clock that the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func withClock(s *Store) *fakeClock {
	c := &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	s.now = c.now
	return c
}

func newKey(t testing.TB) l3config.Key {
	t.Helper()
	k, err := l3config.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func client(t testing.TB, name string, groups ...string) Peer {
	return Peer{Name: name, Kind: l3router.KindClient, PublicKey: newKey(t).PublicKey(), Groups: groups}
}

// connector is a connector whose private key, made on its host, the test
// does not need.
func connector(t testing.TB, name string, subnets ...string) Peer {
	p := Peer{Name: name, Kind: l3router.KindConnector, PublicKey: newKey(t).PublicKey(), KeyFile: "/etc/onramp/" + name + ".key"}
	for _, s := range subnets {
		p.Subnets = append(p.Subnets, netip.MustParsePrefix(s))
	}
	return p
}

func mustAdd(t *testing.T, s *Store, p Peer) Peer {
	t.Helper()
	got, err := s.Add(p)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestStoreAllocation(t *testing.T) {
	s, _ := openTestStore(t, testPools)
	a := mustAdd(t, s, client(t, "alice", "eng", "eng", "ops"))
	if a.Address4 != netip.MustParseAddr("198.18.96.2") || a.Address6 != netip.MustParseAddr("fd00:96::2") {
		t.Fatalf("first addresses %v %v: want the one after the router's", a.Address4, a.Address6)
	}
	if !slices.Equal(a.Groups, []string{"eng", "ops"}) || a.Created.IsZero() {
		t.Fatalf("groups %v created %v", a.Groups, a.Created)
	}
	c := mustAdd(t, s, connector(t, "site-a", "198.18.30.0/24", "fd00:30::/64"))
	b := mustAdd(t, s, client(t, "bob"))
	if c.Address4 != netip.MustParseAddr("198.18.96.3") || b.Address4 != netip.MustParseAddr("198.18.96.4") || b.Address6 != netip.MustParseAddr("fd00:96::4") {
		t.Fatalf("addresses %v %v %v", c.Address4, b.Address4, b.Address6)
	}
	if got := c.Routes(); !slices.Equal(got, []netip.Prefix{
		netip.MustParsePrefix("198.18.96.3/32"), netip.MustParsePrefix("fd00:96::3/128"),
		netip.MustParsePrefix("198.18.30.0/24"), netip.MustParsePrefix("fd00:30::/64"),
	}) {
		t.Fatalf("connector routes %v", got)
	}
	// A freed address is not handed out again at once (see
	// TestStoreAddressReuse), and never a live one.
	if _, err := s.Remove(l3router.KindClient, "alice"); err != nil {
		t.Fatal(err)
	}
	d := mustAdd(t, s, client(t, "dave"))
	e := mustAdd(t, s, client(t, "erin"))
	if d.Address4 != netip.MustParseAddr("198.18.96.5") || e.Address4 != netip.MustParseAddr("198.18.96.6") {
		t.Fatalf("after remove: dave %v erin %v", d.Address4, e.Address4)
	}
	peers, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Addr]string{}
	for _, p := range peers {
		for _, a := range []netip.Addr{p.Address4, p.Address6} {
			if o, ok := seen[a]; ok {
				t.Fatalf("%v given to %s and %s", a, o, p.Name)
			}
			seen[a] = p.Name
		}
	}
	if names := []string{peers[0].Name, peers[1].Name, peers[2].Name, peers[3].Name}; !slices.Equal(names, []string{"bob", "dave", "erin", "site-a"}) {
		t.Fatalf("List order %v", names)
	}
}

func TestStoreExhausted(t *testing.T) {
	// A /29: network .0, router .1, broadcast .7: five peer addresses.
	s, _ := openTestStore(t, Pools{IPv4: netip.MustParsePrefix("198.18.96.0/29"), IPv6: testPools.IPv6})
	var last Peer
	for i := range 5 {
		last = mustAdd(t, s, client(t, "c"+string(rune('a'+i))))
	}
	if last.Address4 != netip.MustParseAddr("198.18.96.6") {
		t.Fatalf("last address %v", last.Address4)
	}
	_, err := s.Add(client(t, "full"))
	if !errors.Is(err, ErrPoolExhausted) || !strings.Contains(err.Error(), "pool 198.18.96.0/29 has no free address left") ||
		!strings.Contains(err.Error(), "l3.pools.ipv4") {
		t.Fatalf("exhausted: %v", err)
	}
	if _, err := s.Get("full"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a failed add was recorded: %v", err)
	}
}

// TestStoreAddressReuse: a removed peer's addresses go to no new peer
// until the reuse delay has passed, across a restart of the edge; then
// the lowest free address is given out again.
func TestStoreAddressReuse(t *testing.T) {
	s, path := openTestStore(t, testPools)
	clock := withClock(s)
	alice := mustAdd(t, s, client(t, "alice"))
	mustAdd(t, s, connector(t, "site-a", "198.18.30.0/24"))
	if _, err := s.Remove(l3router.KindClient, "alice"); err != nil {
		t.Fatal(err)
	}
	clock.advance(time.Hour)
	bob := mustAdd(t, s, client(t, "bob"))
	if bob.Address4 == alice.Address4 || bob.Address6 == alice.Address6 {
		t.Fatalf("bob got removed alice's addresses (%v, %v) an hour after she was removed", bob.Address4, bob.Address6)
	}
	// The same name back is a new peer too.
	again := mustAdd(t, s, client(t, "alice"))
	if again.Address4 == alice.Address4 || again.Address6 == alice.Address6 {
		t.Fatalf("alice added again got her old addresses %v, %v", again.Address4, again.Address6)
	}
	// Removing a connector holds its addresses back the same way.
	if _, err := s.Remove(l3router.KindConnector, "site-a"); err != nil {
		t.Fatal(err)
	}

	// The edge restarts: the held addresses stay held.
	s.reg.Close()
	db := openDB(t, path)
	defer db.Close()
	s, err := OpenStore(db, testPools, testReuseDelay)
	if err != nil {
		t.Fatal(err)
	}
	s.now = clock.now
	clock.advance(testReuseDelay - time.Hour - time.Second) // alice was removed a second less than the delay ago
	carol := mustAdd(t, s, client(t, "carol"))
	if carol.Address4 == alice.Address4 {
		t.Fatalf("carol got alice's address %v a second before the delay was over", carol.Address4)
	}
	clock.advance(time.Second)
	dave := mustAdd(t, s, client(t, "dave"))
	if dave.Address4 != alice.Address4 || dave.Address6 != alice.Address6 {
		t.Fatalf("dave got %v, %v once the delay was over, want the lowest free ones, alice's %v, %v",
			dave.Address4, dave.Address6, alice.Address4, alice.Address6)
	}

	// A delay of 0 gives an address out again at once.
	s0, _ := openTestStore(t, testPools)
	s0.reuseDelay = 0
	a := mustAdd(t, s0, client(t, "alice"))
	if _, err := s0.Remove(l3router.KindClient, "alice"); err != nil {
		t.Fatal(err)
	}
	if b := mustAdd(t, s0, client(t, "bob")); b.Address4 != a.Address4 {
		t.Fatalf("with no delay bob got %v, want alice's %v", b.Address4, a.Address4)
	}
	// So does discarding a peer that never went live (the hub refused it).
	if _, err := s.Discard(l3router.KindClient, "dave"); err != nil {
		t.Fatal(err)
	}
	if e := mustAdd(t, s, client(t, "erin")); e.Address4 != dave.Address4 {
		t.Fatalf("erin got %v, want discarded dave's %v", e.Address4, dave.Address4)
	}
}

// TestStoreExhaustedByHeld: a pool whose only free addresses are held
// back says so, naming the key that holds them, instead of reusing them.
func TestStoreExhaustedByHeld(t *testing.T) {
	s, _ := openTestStore(t, Pools{IPv4: netip.MustParsePrefix("198.18.96.0/29"), IPv6: testPools.IPv6})
	clock := withClock(s)
	for i := range 5 {
		mustAdd(t, s, client(t, "c"+string(rune('a'+i))))
	}
	gone, err := s.Remove(l3router.KindClient, "cc")
	if err != nil {
		t.Fatal(err)
	}
	clock.advance(time.Minute)
	_, err = s.Add(client(t, "new"))
	for _, want := range []string{"pool 198.18.96.0/29 has no free address left", "1 more are held back",
		"held back for l3.address_reuse_delay (24h0m0s)", "free at 2030-01-03T03:04:05Z", "l3.pools.ipv4"} {
		if !errors.Is(err, ErrPoolExhausted) || !strings.Contains(fmt.Sprint(err), want) {
			t.Fatalf("add to a pool whose free address is held: %v, want ErrPoolExhausted saying %q", err, want)
		}
	}
	clock.advance(testReuseDelay)
	if p := mustAdd(t, s, client(t, "new")); p.Address4 != gone.Address4 {
		t.Fatalf("after the delay: %v, want the held %v", p.Address4, gone.Address4)
	}
}

func TestStoreRefusals(t *testing.T) {
	s, _ := openTestStore(t, testPools)
	a := mustAdd(t, s, client(t, "alice"))
	mustAdd(t, s, connector(t, "site-a", "198.18.30.0/24", "fd00:30::/64"))
	edge, err := s.EdgeKey()
	if err != nil {
		t.Fatal(err)
	}
	sameKey := client(t, "alice2")
	sameKey.PublicKey = a.PublicKey
	edgeKey := client(t, "mallory")
	edgeKey.PublicKey = edge.PublicKey()
	withKeyFile := client(t, "carol")
	withKeyFile.KeyFile = "carol.key"
	noKeyFile := connector(t, "site-b", "198.18.40.0/24")
	noKeyFile.KeyFile = ""
	badKeyFile := connector(t, "site-b", "198.18.40.0/24")
	badKeyFile.KeyFile = "site.key\nprivateKey: x"
	for _, tc := range []struct {
		name string
		p    Peer
		is   error
		want string
	}{
		{"name taken", client(t, "alice"), ErrExists, `name "alice" is taken`},
		{"name taken by a connector", connector(t, "site-a", "198.18.40.0/24"), ErrExists, `name "site-a" is taken`},
		{"bad name", client(t, "Alice"), ErrInvalid, `client name "Alice": character 'A' at 0`},
		{"empty name", client(t, ""), ErrInvalid, "client name: empty"},
		{"bad group", client(t, "bob", "eng team"), ErrInvalid, `group name "eng team"`},
		{"key taken", sameKey, ErrExists, `is already client "alice"'s`},
		{"edge key", edgeKey, ErrInvalid, "is the edge's own"},
		{"client key file", withKeyFile, ErrInvalid, "only connectors have one"},
		{"connector without key file", noKeyFile, ErrInvalid, "key file: missing"},
		{"key file with a newline", badKeyFile, ErrInvalid, "control characters"},
		{"no subnets", connector(t, "site-b"), ErrInvalid, "at least one"},
		{"overlaps a subnet around a failover pair", connector(t, "site-c", "198.18.30.0/25"), ErrOverlap,
			`subnet 198.18.30.0/25 overlaps subnet 198.18.30.0/24 of connector "site-a"`},
		{"inside a subnet", connector(t, "site-b", "fd00:30::/96"), ErrOverlap, `overlaps subnet fd00:30::/64 of connector "site-a"`},
		{"around a subnet", connector(t, "site-b", "198.18.0.0/18"), ErrOverlap, "overlaps subnet 198.18.30.0/24"},
		{"pool", connector(t, "site-b", "198.18.100.0/24"), ErrOverlap, "subnet 198.18.100.0/24 overlaps the client pool 198.18.96.0/20"},
		{"around the pools", connector(t, "site-b", "fd00::/8"), ErrOverlap, "overlaps the client pool fd00:96::/48"},
		{"own subnets", connector(t, "site-b", "198.18.40.0/24", "198.18.40.128/25"), ErrInvalid, "overlaps subnet 198.18.40.0/24 of the same connector"},
		{"host bits", connector(t, "site-b", "198.18.40.1/24"), ErrInvalid, "host bits set (did you mean 198.18.40.0/24?)"},
		{"default route", connector(t, "site-b", "0.0.0.0/0"), ErrInvalid, "a default route is not a subnet"},
		{"link local", connector(t, "site-b", "fe80::/64"), ErrInvalid, "link-local"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Add(tc.p)
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %v containing %q", err, tc.is, tc.want)
			}
		})
	}
	peers, _ := s.List()
	if len(peers) != 2 {
		t.Fatalf("refused peers were recorded: %d peers", len(peers))
	}
	// The same subnet from a second connector is a failover pair.
	if _, err := s.Add(connector(t, "site-b", "198.18.30.0/24")); err != nil {
		t.Fatalf("second connector for the same subnet: %v", err)
	}
	// Removing with the wrong kind is refused.
	if _, err := s.Remove(l3router.KindClient, "site-a"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"site-a" is a connector, not a client`) {
		t.Fatalf("remove wrong kind: %v", err)
	}
	if _, err := s.Remove(l3router.KindClient, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("remove unknown: %v", err)
	}
}

func TestStorePersistence(t *testing.T) {
	s, path := openTestStore(t, testPools)
	k1, err := s.EdgeKey()
	if err != nil {
		t.Fatal(err)
	}
	a := mustAdd(t, s, client(t, "alice", "eng"))
	c := mustAdd(t, s, connector(t, "site-a", "198.18.30.0/24"))
	// The cleanup of openTestStore closes the first handle; close it now
	// to reopen the file.
	s.reg.Close()

	db := openDB(t, path)
	defer db.Close()
	s2, err := OpenStore(db, testPools, testReuseDelay)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := s2.EdgeKey()
	if err != nil || k2 != k1 {
		t.Fatalf("edge key changed across reopen: %v", err)
	}
	peers, err := s2.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(peers) != 2 {
		t.Fatalf("%d peers after reopen", len(peers))
	}
	ga, gc := peers[0], peers[1]
	if ga.PublicKey != a.PublicKey || ga.Address4 != a.Address4 || ga.Address6 != a.Address6 || !slices.Equal(ga.Groups, a.Groups) ||
		!ga.Created.Equal(a.Created) || ga.Kind != l3router.KindClient || ga.KeyFile != "" {
		t.Fatalf("client after reopen %+v, want %+v", ga, a)
	}
	if gc.PublicKey != c.PublicKey || gc.KeyFile != c.KeyFile || !slices.Equal(gc.Subnets, c.Subnets) || gc.Kind != l3router.KindConnector {
		t.Fatalf("connector after reopen %+v, want %+v", gc, c)
	}
	// The next allocation skips the stored addresses.
	if b := mustAdd(t, s2, client(t, "bob")); b.Address4 != netip.MustParseAddr("198.18.96.4") {
		t.Fatalf("bob %v", b.Address4)
	}
}

// TestStorePoolChanged: after the pools change to cover a connector's
// subnet, new addresses skip the subnet.
func TestStorePoolChanged(t *testing.T) {
	s, _ := openTestStore(t, testPools)
	mustAdd(t, s, connector(t, "site-a", "198.18.112.0/30"))
	s.pools.IPv4 = netip.MustParsePrefix("198.18.112.0/29") // router .1; .2 and .3 are site-a's subnet
	if a := mustAdd(t, s, client(t, "alice")); a.Address4 != netip.MustParseAddr("198.18.112.4") {
		t.Fatalf("alice %v: want the first address outside site-a's subnet", a.Address4)
	}
}

func TestSubnets(t *testing.T) {
	peers := []Peer{
		connector(t, "b", "198.18.40.0/24", "fd00:40::/64"),
		client(t, "c"),
		connector(t, "a", "198.18.30.0/24"),
	}
	got := Subnets(peers, "")
	want := []netip.Prefix{netip.MustParsePrefix("198.18.30.0/24"), netip.MustParsePrefix("198.18.40.0/24"), netip.MustParsePrefix("fd00:40::/64")}
	if !slices.Equal(got, want) {
		t.Fatalf("Subnets = %v", got)
	}
	if got := Subnets(peers, "b"); !slices.Equal(got, want[:1]) {
		t.Fatalf("Subnets except b = %v", got)
	}
	// A failover partner of b: clients see its subnets once; neither
	// partner routes its own subnet through the edge.
	peers = append(peers, connector(t, "b2", "198.18.40.0/24"))
	if got := Subnets(peers, ""); !slices.Equal(got, want) {
		t.Fatalf("Subnets with a failover pair = %v, want each once: %v", got, want)
	}
	if got := Subnets(peers, "b2"); !slices.Equal(got, []netip.Prefix{want[0], want[2]}) {
		t.Fatalf("Subnets except b2 = %v", got)
	}
	if got := Subnets(peers, "b"); !slices.Equal(got, want[:1]) {
		t.Fatalf("Subnets except b with its partner = %v", got)
	}
}

// TestSecretsStoreDropsPrivateKeys: a store of an earlier edge, which kept
// the private key of each connector it made a key for (and a zero one for
// clients), loses every private key at DropPrivateKeys, which names the
// connectors it held one for; the records are otherwise unchanged and a
// second run finds nothing.
func TestSecretsStoreDropsPrivateKeys(t *testing.T) {
	s, path := openTestStore(t, testPools)
	a := mustAdd(t, s, client(t, "alice", "eng"))
	c := mustAdd(t, s, connector(t, "site-a", "198.18.30.0/24"))
	legacyKey := newKey(t)
	// Rewrite the records as an earlier edge stored them.
	_, err := s.reg.Update(context.Background(), func(tx registry.Txn) error {
		for _, p := range []struct {
			peer Peer
			priv l3config.Key
		}{{a, l3config.Key{}}, {c, legacyKey}} {
			p.peer.KeyFile = ""
			v, err := json.Marshal(struct {
				record
				PrivateKey l3config.Key `json:"private_key"`
			}{record{V: recordVersion, Peer: p.peer}, p.priv})
			if err != nil {
				return err
			}
			if err := tx.Put(prefixPeers+p.peer.Name, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	names, err := s.DropPrivateKeys()
	if err != nil || !slices.Equal(names, []string{"site-a"}) {
		t.Fatalf("dropped %v, %v: want site-a's", names, err)
	}
	if again, err := s.DropPrivateKeys(); err != nil || len(again) != 0 {
		t.Fatalf("second run dropped %v, %v", again, err)
	}
	peers, err := s.List()
	if err != nil || len(peers) != 2 || peers[0].PublicKey != a.PublicKey || peers[1].PublicKey != c.PublicKey ||
		!slices.Equal(peers[1].Subnets, c.Subnets) || peers[1].Address4 != c.Address4 {
		t.Fatalf("records changed: %+v %v", peers, err)
	}
	// Reopened: the records hold no key. (Freed pages of the file may,
	// until bbolt reuses them: the upgrade note asks for a new key.)
	s.reg.Close()
	db := openDB(t, path)
	defer db.Close()
	_ = db.View(context.Background(), func(tx registry.Txn) error {
		recs, err := tx.List(prefixPeers)
		for _, r := range recs {
			if strings.Contains(string(r.Value), "private_key") || strings.Contains(string(r.Value), legacyKey.String()) {
				t.Errorf("record %s still holds a private key: %s", r.Key, r.Value)
			}
		}
		return err
	})
}

// TestStoreAddMany: peers added at once get what they would one by one
// (the lowest free addresses, skipping a held one), in one transaction:
// a refusal of any, a name or key twice in the batch included, records
// none; and 10,000 clients take seconds, not the minutes of Add's one by
// one.
func TestStoreAddMany(t *testing.T) {
	s, _ := openTestStore(t, Pools{IPv4: netip.MustParsePrefix("198.19.0.0/16"), IPv6: testPools.IPv6})
	withClock(s)
	mustAdd(t, s, client(t, "alice"))  // .2
	mustAdd(t, s, client(t, "gone"))   // .3, held after its removal
	mustAdd(t, s, client(t, "before")) // .4
	if _, err := s.Remove(l3router.KindClient, "gone"); err != nil {
		t.Fatal(err)
	}
	ps := []Peer{client(t, "bob", "eng"), connector(t, "site-a", "198.18.30.0/24"), client(t, "carol")}
	got, err := s.AddMany(ps)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"198.19.0.5", "198.19.0.6", "198.19.0.7"} {
		if got[i].Name != ps[i].Name || got[i].Address4 != netip.MustParseAddr(want) || got[i].Created.IsZero() {
			t.Errorf("peer %d: %s %v, want %s %s", i, got[i].Name, got[i].Address4, ps[i].Name, want)
		}
		if p, err := s.Get(ps[i].Name); err != nil || p.Address6 != got[i].Address6 || p.PublicKey != ps[i].PublicKey {
			t.Errorf("%s stored as %+v, %v", ps[i].Name, p, err)
		}
	}

	twice := client(t, "dave")
	sameKey := client(t, "erin")
	sameKey.PublicKey = twice.PublicKey
	for _, tc := range []struct {
		name string
		ps   []Peer
		is   error
		want string
	}{
		{"name twice", []Peer{client(t, "frank"), client(t, "frank")}, ErrExists, `add client "frank": name "frank" is taken`},
		{"key twice", []Peer{twice, sameKey}, ErrExists, `add client "erin": public key`},
		{"name taken", []Peer{client(t, "grace"), client(t, "alice")}, ErrExists, `name "alice" is taken`},
		{"subnets of one batch", []Peer{connector(t, "site-b", "198.18.40.0/24"), connector(t, "site-c", "198.18.40.0/25")}, ErrOverlap,
			`subnet 198.18.40.0/25 overlaps subnet 198.18.40.0/24 of connector "site-b"`},
		{"invalid", []Peer{client(t, "heidi"), client(t, "Ivan")}, ErrInvalid, `client name "Ivan"`},
	} {
		if _, err := s.AddMany(tc.ps); !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %v containing %q", tc.name, err, tc.is, tc.want)
		}
	}
	if peers, _ := s.List(); len(peers) != 5 {
		t.Fatalf("%d peers after refused batches, want the 5 added", len(peers))
	}

	many := make([]Peer, 10000)
	for i := range many {
		var k l3config.Key
		k[0], k[1], k[2] = 1, byte(i>>8), byte(i)
		many[i] = Peer{Name: fmt.Sprintf("c%d", i), Kind: l3router.KindClient, PublicKey: k}
	}
	start := time.Now()
	if _, err := s.AddMany(many); err != nil {
		t.Fatal(err)
	}
	peers, err := s.List()
	if err != nil || len(peers) != 10005 {
		t.Fatalf("%d peers, %v", len(peers), err)
	}
	t.Logf("10,000 clients added in %v", time.Since(start).Round(time.Millisecond))
	seen := map[netip.Addr]string{}
	for _, p := range peers {
		for _, a := range []netip.Addr{p.Address4, p.Address6} {
			if o, ok := seen[a]; ok {
				t.Fatalf("%v given to %s and %s", a, o, p.Name)
			}
			seen[a] = p.Name
		}
	}
}
