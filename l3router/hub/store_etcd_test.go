package hub

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/onramp-net/onramp/dataplane/registry"
	"github.com/onramp-net/onramp/dataplane/registry/etcdtest"
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
