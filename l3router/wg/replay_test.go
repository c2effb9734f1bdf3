package wg

import "testing"

func TestReplayWindow(t *testing.T) {
	var w replayWindow
	steps := []struct {
		ctr  uint64
		want bool
	}{
		{0, true}, {0, false}, {1, true}, {3, true}, {2, true}, {2, false},
		{100, true}, {50, true}, {50, false},
		{replayWindowSize + 100, true},
		{100, false}, // seen before, still inside the window
		{101, true},  // inside the window, new
		{99, false},  // beyond the window
		{replayWindowSize + 99, true},
		{1 << 40, true}, {1<<40 - replayWindowSize - 1, false}, {1<<40 - 1, true},
		{rejectAfterMessages, false},
	}
	for i, s := range steps {
		if got := w.accept(s.ctr); got != s.want {
			t.Fatalf("step %d: accept(%d) = %v, want %v", i, s.ctr, got, s.want)
		}
	}
}
