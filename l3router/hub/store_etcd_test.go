package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/onramp-net/onramp/dataplane/registry"
	"github.com/onramp-net/onramp/dataplane/registry/etcdtest"
	"github.com/onramp-net/onramp/l3router"
)

func TestMain(m *testing.M) {
	code := m.Run()
	etcdtest.StopShared()
	os.Exit(code)
}

// TestStoreEtcdTwoEdges plays two edges adding clients at once through a
// real etcd: every client gets addresses no other has, a name taken on
// one edge is refused on the other, both edges see one edge key, and each
// edge's mirror sees the other's peers.
func TestStoreEtcdTwoEdges(t *testing.T) {
	m := etcdtest.Shared(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var edges [2]*Store
	var mirrors [2]*Mirror
	for i := range edges {
		reg, err := registry.OpenEtcd(ctx, registry.EtcdConfig{Endpoints: []string{m.Client}, Prefix: etcdtest.Prefix(t)})
		if err != nil {
			t.Fatal(err)
		}
		defer reg.Close()
		if edges[i], err = OpenStore(reg, testPools, testReuseDelay); err != nil {
			t.Fatal(err)
		}
		if mirrors[i], err = edges[i].Mirror(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	k0, err := edges[0].EdgeKey()
	if err != nil {
		t.Fatal(err)
	}
	if k1, err := edges[1].EdgeKey(); err != nil || k1 != k0 {
		t.Fatalf("the edges have different hub keys (%v)", err)
	}
	const each = 40
	var wg sync.WaitGroup
	errs := make(chan error, 2*each)
	for e := range edges {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := edges[e].Add(client(t, fmt.Sprintf("c%d-%d", e, i))); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	peers, err := edges[1].List()
	if err != nil {
		t.Fatal(err)
	}
	if len(peers) != 2*each {
		t.Fatalf("%d peers, want %d", len(peers), 2*each)
	}
	seen := map[netip.Addr]string{}
	for _, p := range peers {
		for _, a := range []netip.Addr{p.Address4, p.Address6} {
			if o, ok := seen[a]; ok {
				t.Fatalf("%v given to both %s and %s", a, o, p.Name)
			}
			seen[a] = p.Name
		}
	}
	if _, err := edges[1].Add(client(t, "c0-0")); !errors.Is(err, ErrExists) {
		t.Fatalf("a name taken on the other edge: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(mirrors[0].Peers()) != 2*each || len(mirrors[1].Peers()) != 2*each {
		if time.Now().After(deadline) {
			t.Fatalf("mirrors hold %d and %d peers, want %d each", len(mirrors[0].Peers()), len(mirrors[1].Peers()), 2*each)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStoreEtcdMassRemoval: after 200 peers were removed and their reuse
// delay passed, adding a peer on etcd still works (the expired release
// records are forgotten a few at a time, not in one transaction beyond
// etcd's limit), and gives the freed addresses again.
func TestStoreEtcdMassRemoval(t *testing.T) {
	m := etcdtest.Shared(t)
	reg, err := registry.OpenEtcd(context.Background(), registry.EtcdConfig{Endpoints: []string{m.Client}, Prefix: etcdtest.Prefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	s, err := OpenStore(reg, testPools, testReuseDelay)
	if err != nil {
		t.Fatal(err)
	}
	clock := withClock(s)
	const n = 200
	var first netip.Addr
	for i := range n {
		p := mustAdd(t, s, client(t, fmt.Sprintf("c%d", i)))
		if i == 0 {
			first = p.Address4
		}
	}
	for i := range n {
		if _, err := s.Remove(l3router.KindClient, fmt.Sprintf("c%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	clock.advance(testReuseDelay + time.Minute)
	for i := range 3 {
		p, err := s.Add(client(t, fmt.Sprintf("new%d", i)))
		if err != nil {
			t.Fatalf("add after a mass removal: %v", err)
		}
		if i == 0 && p.Address4 != first {
			t.Fatalf("first new peer got %v, want the freed %v", p.Address4, first)
		}
	}
}

// TestStoreEtcdDropManyPrivateKeys: 150 connectors whose records an earlier
// edge wrote with their private keys (as an import of its file into etcd
// brings them) lose them at DropPrivateKeys in transactions etcd takes.
func TestStoreEtcdDropManyPrivateKeys(t *testing.T) {
	m := etcdtest.Shared(t)
	reg, err := registry.OpenEtcd(context.Background(), registry.EtcdConfig{Endpoints: []string{m.Client}, Prefix: etcdtest.Prefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	s, err := OpenStore(reg, Pools{IPv4: netip.MustParsePrefix("198.19.0.0/16"), IPv6: testPools.IPv6}, testReuseDelay)
	if err != nil {
		t.Fatal(err)
	}
	const n = 150
	for i := range n {
		p := mustAdd(t, s, connector(t, fmt.Sprintf("site-%d", i), fmt.Sprintf("198.18.%d.0/24", i)))
		_, err := reg.Update(context.Background(), func(tx registry.Txn) error {
			v, _ := json.Marshal(struct {
				record
				PrivateKey string `json:"private_key"`
			}{record{V: recordVersion, Peer: p}, newKey(t).String()})
			return tx.Put(prefixPeers+p.Name, v)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	names, err := s.DropPrivateKeys()
	if err != nil || len(names) != n {
		t.Fatalf("dropped %d keys (%v), want %d", len(names), err, n)
	}
	if again, err := s.DropPrivateKeys(); err != nil || len(again) != 0 {
		t.Fatalf("second run: %v %v", again, err)
	}
}
