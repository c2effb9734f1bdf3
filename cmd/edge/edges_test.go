package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/onramp-net/onramp/dataplane/registry"
)

// TestL3Endpoints: a connector's l3.yml lists the L3 endpoint of every
// live edge but this one, each once; edges without L3 and those not heard
// from for memberExpiry are left out.
func TestL3Endpoints(t *testing.T) {
	reg, err := registry.OpenBolt(filepath.Join(t.TempDir(), "reg.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	now := time.Now().UnixMilli()
	records := map[string]member{
		"self":    {L3: "198.18.51.2:51820", Seen: now},
		"b":       {L3: "198.18.52.2:51820", Seen: now},
		"c":       {L3: "[fd00:53::2]:51820", Seen: now - 5000},
		"b-again": {L3: "198.18.52.2:51820", Seen: now},
		"no-l3":   {Advertise: []string{"198.18.54.2:7844"}, Seen: now},
		"gone":    {L3: "198.18.55.2:51820", Seen: now - memberExpiry.Milliseconds() - 1000},
	}
	ctx := context.Background()
	if _, err := reg.Update(ctx, func(tx registry.Txn) error {
		for id, m := range records {
			v, _ := json.Marshal(m)
			if err := tx.Put(prefixEdges+id, v); err != nil {
				return err
			}
		}
		return tx.Put(prefixEdges+"garbage", []byte("{"))
	}); err != nil {
		t.Fatal(err)
	}
	got, err := l3Endpoints(ctx, reg, "self")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"198.18.52.2:51820", "[fd00:53::2]:51820"}; !slices.Equal(got, want) {
		t.Fatalf("l3 endpoints %q, want %q", got, want)
	}
}
