package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "edge.db")
	store, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store, path
}

func TestTunnelLifecycle(t *testing.T) {
	store, _ := openTemp(t)
	list, err := store.ListTunnels()
	if err != nil || len(list) != 0 {
		t.Fatalf("empty store lists %v, %v", list, err)
	}
	before := time.Now()
	var created []Tunnel
	for _, name := range []string{"web", "a-1", "zz", "0"} {
		tun, err := store.CreateTunnel(name)
		if err != nil {
			t.Fatal(err)
		}
		if tun.Name != name || len(tun.Secret) != SecretSize || tun.ID == ([IDSize]byte{}) {
			t.Errorf("created %+v", tun)
		}
		if tun.Created.Before(before.Add(-time.Second)) || tun.Created.After(time.Now().Add(time.Second)) {
			t.Errorf("Created %v not around now", tun.Created)
		}
		created = append(created, tun)
	}
	if bytes.Equal(created[0].Secret, created[1].Secret) || created[0].ID == created[1].ID {
		t.Error("two tunnels share an ID or a secret")
	}

	got, err := store.GetTunnel(created[0].ID)
	if err != nil || !equal(got, created[0]) {
		t.Errorf("GetTunnel = %+v, %v, want %+v", got, err, created[0])
	}
	got, err = store.TunnelByName("zz")
	if err != nil || !equal(got, created[2]) {
		t.Errorf("TunnelByName = %+v, %v, want %+v", got, err, created[2])
	}
	secret, ok := store.Secret(created[1].ID)
	if !ok || !bytes.Equal(secret, created[1].Secret) {
		t.Errorf("Secret = %x, %v", secret, ok)
	}
	secret[0] ^= 0xff // the caller's copy
	if again, _ := store.Secret(created[1].ID); !bytes.Equal(again, created[1].Secret) {
		t.Error("modifying a returned secret changed the store")
	}

	list, err = store.ListTunnels()
	if err != nil {
		t.Fatal(err)
	}
	if names := tunnelNames(list); !slices.Equal(names, []string{"0", "a-1", "web", "zz"}) {
		t.Errorf("ListTunnels names %v, want sorted", names)
	}

	del, err := store.DeleteTunnel("web")
	if err != nil || !equal(del, created[0]) {
		t.Errorf("DeleteTunnel = %+v, %v, want %+v", del, err, created[0])
	}
	if _, err := store.GetTunnel(created[0].ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetTunnel after delete: %v", err)
	}
	if _, err := store.TunnelByName("web"); !errors.Is(err, ErrNotFound) {
		t.Errorf("TunnelByName after delete: %v", err)
	}
	if _, ok := store.Secret(created[0].ID); ok {
		t.Error("Secret of a deleted tunnel")
	}
	if _, err := store.DeleteTunnel("web"); !errors.Is(err, ErrNotFound) || err.Error() != `store: delete tunnel "web": not found` {
		t.Errorf("second DeleteTunnel: %v", err)
	}
	// The name is free again, with a new ID and secret.
	again, err := store.CreateTunnel("web")
	if err != nil || again.ID == created[0].ID || bytes.Equal(again.Secret, created[0].Secret) {
		t.Errorf("re-created %+v, %v", again, err)
	}
}

func TestNotFound(t *testing.T) {
	store, _ := openTemp(t)
	_, err := store.GetTunnel([IDSize]byte{1})
	if !errors.Is(err, ErrNotFound) || err.Error() != "store: get tunnel 01000000000000000000000000000000: not found" {
		t.Errorf("GetTunnel: %v", err)
	}
	if _, err := store.TunnelByName("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("TunnelByName: %v", err)
	}
	if s, ok := store.Secret([IDSize]byte{}); ok || s != nil {
		t.Errorf("Secret of unknown ID: %x, %v", s, ok)
	}
}

func TestNames(t *testing.T) {
	store, _ := openTemp(t)
	if _, err := store.CreateTunnel("dup"); err != nil {
		t.Fatal(err)
	}
	_, err := store.CreateTunnel("dup")
	if !errors.Is(err, ErrExists) || err.Error() != `store: create tunnel "dup": already exists` {
		t.Errorf("duplicate: %v", err)
	}
	for name, reason := range map[string]string{
		"":                      "empty",
		strings.Repeat("a", 64): "64 characters, want at most 63",
		"Web":                   `character 'W' at 0`,
		"a_b":                   `character '_' at 1`,
		"a.b":                   `character '.' at 1`,
		"a b":                   `character ' ' at 1`,
		"é":                     "non-ASCII byte 0xc3 at 0",
	} {
		_, err := store.CreateTunnel(name)
		if !errors.Is(err, ErrInvalidName) || !strings.Contains(err.Error(), "invalid tunnel name: "+reason) {
			t.Errorf("CreateTunnel(%q): %v, want reason %q", name, err, reason)
		}
	}
	for _, name := range []string{"a", "-", "0-9", strings.Repeat("z", 63)} {
		if err := ValidName(name); err != nil {
			t.Errorf("ValidName(%q): %v", name, err)
		}
	}
	list, _ := store.ListTunnels()
	if len(list) != 1 {
		t.Errorf("failed creates left tunnels: %v", tunnelNames(list))
	}
}

func TestPersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.db")
	store, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := store.CreateTunnel("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := store.CreateTunnel("b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.DeleteTunnel("a"); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := store.ListTunnels(); err == nil {
		t.Error("ListTunnels after Close succeeded")
	}

	store, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	list, err := store.ListTunnels()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || !equal(list[0], b) {
		t.Errorf("after reopen: %+v, want only %+v", list, b)
	}
	if _, err := store.GetTunnel(a.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted tunnel after reopen: %v", err)
	}
	if s, ok := store.Secret(b.ID); !ok || !bytes.Equal(s, b.Secret) {
		t.Error("secret lost across reopen")
	}
}

func TestConcurrentCreate(t *testing.T) {
	store, _ := openTemp(t)
	const workers, each = 8, 5
	var wg sync.WaitGroup
	errs := make(chan error, workers*each*2)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				// Every worker also races for one shared name.
				if _, err := store.CreateTunnel(fmt.Sprintf("w%d-%d", w, i)); err != nil {
					errs <- err
				}
				if _, err := store.CreateTunnel(fmt.Sprintf("shared-%d", i)); err != nil && !errors.Is(err, ErrExists) {
					errs <- err
				}
				store.ListTunnels()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	list, err := store.ListTunnels()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != workers*each+each {
		t.Errorf("%d tunnels, want %d", len(list), workers*each+each)
	}
	ids := map[[IDSize]byte]bool{}
	for _, tun := range list {
		ids[tun.ID] = true
	}
	if len(ids) != len(list) {
		t.Error("duplicate IDs")
	}
}

func TestSecondOpenTimesOut(t *testing.T) {
	_, path := openTemp(t)
	start := time.Now()
	second, err := Open(path)
	if err == nil {
		second.Close()
		t.Fatal("second Open of a locked file succeeded")
	}
	if elapsed := time.Since(start); elapsed < LockTimeout/2 || elapsed > LockTimeout+5*time.Second {
		t.Errorf("second Open gave up after %v, want about %v", elapsed, LockTimeout)
	}
	want := "store: open " + path + ": database file is locked by another process (gave up after 1s; is another edge using it?)"
	if !errors.Is(err, ErrLocked) || err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "missing", "edge.db")); err == nil || !strings.HasPrefix(err.Error(), "store: open ") {
		t.Errorf("Open in a missing directory: %v", err)
	}
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, bytes.Repeat([]byte("not a bolt file "), 512), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(garbage); err == nil {
		s.Close()
		t.Error("Open of a garbage file succeeded")
	}
}

func TestRecordCodec(t *testing.T) {
	tun := Tunnel{ID: [IDSize]byte{1, 2}, Name: "n", Secret: []byte{9, 8, 7}, Created: time.Unix(0, 1234567890123).UTC(), Generation: 1<<40 + 3}
	got, err := parseTunnel(tun.ID[:], appendTunnel(nil, tun))
	if err != nil || !equal(got, tun) {
		t.Errorf("round trip: %+v, %v", got, err)
	}
	// A version 1 record, written before rotation existed: generation 1.
	v1 := []byte{1, 0, 0, 0, 0x11, 0x22, 0x33, 0x44, 0x55, 3, 9, 8, 7, 'o', 'l', 'd'}
	got, err = parseTunnel(tun.ID[:], v1)
	want := Tunnel{ID: tun.ID, Name: "old", Secret: []byte{9, 8, 7}, Created: time.Unix(0, 0x1122334455).UTC(), Generation: 1}
	if err != nil || !equal(got, want) {
		t.Errorf("version 1 record: %+v, %v, want %+v", got, err, want)
	}
	for _, bad := range [][]byte{
		nil, {1}, {3, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		{1, 0, 0, 0, 0, 0, 0, 0, 0, 5, 1},                            // v1, short secret
		{2, 0, 0, 0, 0, 0, 0, 0, 0, 0},                               // v2, short header
		{2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 5, 1, 2}, // v2, short secret
	} {
		if _, err := parseTunnel(tun.ID[:], bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("parseTunnel(%x): %v", bad, err)
		}
	}
}

// TestRotate: a new secret and generation for the same tunnel; the old
// secret no longer authenticates; other tunnels are untouched; the
// rotation survives a reopen; deleting ends the generations (a tunnel
// created again under the name starts over with a new ID).
func TestRotate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.db")
	store, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := store.CreateTunnel("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := store.CreateTunnel("b")
	if err != nil {
		t.Fatal(err)
	}
	if a.Generation != 1 {
		t.Errorf("new tunnel has generation %d, want 1", a.Generation)
	}
	r1, err := store.RotateTunnel("a")
	if err != nil {
		t.Fatal(err)
	}
	if r1.ID != a.ID || r1.Name != a.Name || !r1.Created.Equal(a.Created) || r1.Generation != 2 {
		t.Errorf("rotated %+v, want the same ID, name and creation time with generation 2", r1)
	}
	if len(r1.Secret) != SecretSize || bytes.Equal(r1.Secret, a.Secret) {
		t.Errorf("rotated secret %x (old %x)", r1.Secret, a.Secret)
	}
	secret, gen, ok := store.Credential(a.ID)
	if !ok || gen != 2 || !bytes.Equal(secret, r1.Secret) {
		t.Errorf("Credential after rotate = %x, %d, %v; want the new secret, generation 2", secret, gen, ok)
	}
	if s, _ := store.Secret(a.ID); !bytes.Equal(s, r1.Secret) {
		t.Error("Secret after rotate is not the new secret")
	}
	r2, err := store.RotateTunnel("a")
	if err != nil || r2.Generation != 3 || bytes.Equal(r2.Secret, r1.Secret) {
		t.Errorf("second rotation: %+v, %v", r2, err)
	}
	if got, _ := store.GetTunnel(b.ID); !equal(got, b) {
		t.Errorf("rotating a changed b: %+v, want %+v", got, b)
	}
	if _, err := store.RotateTunnel("nope"); !errors.Is(err, ErrNotFound) || err.Error() != `store: rotate tunnel "nope": not found` {
		t.Errorf("rotating an unknown tunnel: %v", err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	store, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if got, err := store.TunnelByName("a"); err != nil || !equal(got, r2) {
		t.Errorf("after reopen: %+v, %v, want %+v", got, err, r2)
	}
	if _, err := store.DeleteTunnel("a"); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := store.Credential(a.ID); ok {
		t.Error("Credential of a deleted tunnel")
	}
	again, err := store.CreateTunnel("a")
	if err != nil || again.ID == a.ID || again.Generation != 1 {
		t.Errorf("re-created %+v, %v; want a new ID at generation 1", again, err)
	}
}

// TestConcurrentRotate: concurrent rotations of one tunnel each get their
// own generation; the last one's secret is the one stored.
func TestConcurrentRotate(t *testing.T) {
	store, _ := openTemp(t)
	if _, err := store.CreateTunnel("r"); err != nil {
		t.Fatal(err)
	}
	const n = 16
	results := make(chan Tunnel, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			r, err := store.RotateTunnel("r")
			if err != nil {
				t.Error(err)
			}
			results <- r
		})
	}
	wg.Wait()
	close(results)
	gens := map[uint64]Tunnel{}
	for r := range results {
		gens[r.Generation] = r
	}
	if len(gens) != n {
		t.Errorf("%d distinct generations from %d rotations", len(gens), n)
	}
	cur, err := store.TunnelByName("r")
	if err != nil || cur.Generation != n+1 || !bytes.Equal(cur.Secret, gens[n+1].Secret) {
		t.Errorf("stored %+v, %v; want generation %d with that rotation's secret", cur, err, n+1)
	}
}

func equal(a, b Tunnel) bool {
	return a.ID == b.ID && a.Name == b.Name && bytes.Equal(a.Secret, b.Secret) && a.Created.Equal(b.Created) && a.Generation == b.Generation
}

func tunnelNames(list []Tunnel) []string {
	var names []string
	for _, t := range list {
		names = append(names, t.Name)
	}
	return names
}
