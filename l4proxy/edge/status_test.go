package edge

import (
	"log/slog"
	"testing"
	"time"
)

// TestConnectionsQuiet: Connections says which connections are quiet.
func TestConnectionsQuiet(t *testing.T) {
	s := NewServer(Options{Logger: slog.New(slog.DiscardHandler), QuietAfter: time.Second})
	s.SetTunnels(map[string][16]byte{"t": {1}})
	dead, live := &liveFake{}, &liveFake{}
	lcDead, lcLive := &liveConn{conn: dead}, &liveConn{conn: live}
	s.register(lcDead)
	s.register(lcLive)
	now := time.Unix(1000, 0)
	for range 3 {
		live.recv.Add(1)
		s.sampleLiveness(now)
		now = now.Add(600 * time.Millisecond)
	}
	quiet := 0
	for _, c := range s.Connections() {
		if c.Quiet {
			quiet++
		}
	}
	if quiet != 1 || !lcDead.quiet.Load() || lcLive.quiet.Load() {
		t.Fatalf("%d connections quiet, want the silent one", quiet)
	}
}
