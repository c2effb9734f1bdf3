package wg

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

var replaySizes = []struct {
	name   string
	blocks int
	window uint64
}{
	{"router", replayBlocksRouter, 8128}, // wireguard-go's and the kernel's window
	{"tun", replayBlocksTUN, 65472},
}

func TestReplayWindow(t *testing.T) {
	for _, sz := range replaySizes {
		t.Run(sz.name, func(t *testing.T) {
			var w replayWindow
			win := sz.window
			steps := []struct {
				ctr  uint64
				want bool
			}{
				{0, true}, {0, false}, {1, true}, {3, true}, {2, true}, {2, false},
				{100, true}, {50, true}, {50, false},
				{win + 100, true},
				{100, false}, // seen before, at the edge of the window
				{101, true},  // inside the window, new
				{99, false},  // behind the window, never seen
				{win + 99, true},
				{1 << 40, true}, {1<<40 - win - 1, false}, {1<<40 - win, true}, {1<<40 - 1, true},
				{rejectAfterMessages - 1, true},
				{rejectAfterMessages, false}, {rejectAfterMessages + 1, false},
			}
			for i, s := range steps {
				if got := w.accept(s.ctr, sz.blocks); got != s.want {
					t.Fatalf("step %d: accept(%d) = %v, want %v", i, s.ctr, got, s.want)
				}
			}
			if got := w.window(); got != win {
				t.Errorf("window %d, want %d", got, win)
			}
		})
	}
}

// TestReplayWindowModel checks the window against the definition, a set
// of every counter seen, over random walks of counters that jump ahead,
// fall back within and beyond the window and repeat, and across reset.
func TestReplayWindowModel(t *testing.T) {
	for _, sz := range replaySizes {
		t.Run(sz.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(sz.blocks)))
			for walk := range 20 {
				var w replayWindow
				seen := map[uint64]bool{}
				var last uint64
				for step := range 20000 {
					var ctr uint64
					switch r := rng.IntN(100); {
					case r < 40: // ahead, a little or far
						ctr = last + uint64(rng.IntN(200))
						if r < 2 {
							ctr = last + uint64(rng.IntN(4*int(sz.window)))
						}
					case r < 90: // back, inside or just past the window
						ctr = last - min(last, uint64(rng.IntN(int(sz.window)+200)))
					default: // a repeat
						for c := range seen {
							ctr = c
							break
						}
					}
					want := !seen[ctr] && last-min(last, ctr) <= sz.window
					if got := w.accept(ctr, sz.blocks); got != want {
						t.Fatalf("walk %d step %d: accept(%d) with greatest %d = %v, want %v", walk, step, ctr, last, got, want)
					}
					if want {
						seen[ctr] = true
						last = max(last, ctr)
					}
				}
				// After a reset every counter is new again.
				w.reset()
				for _, c := range []uint64{0, 1, 63, 64, 200} {
					if !w.accept(c, sz.blocks) {
						t.Fatalf("walk %d: counter %d refused after reset", walk, c)
					}
				}
			}
		})
	}
}

// BenchmarkReplayWindow: in-order counters (the common case), and counters
// reordered within 4,096 as the edge's loops send them.
func BenchmarkReplayWindow(b *testing.B) {
	for _, sz := range replaySizes {
		for _, order := range []string{"in-order", "reordered"} {
			b.Run(fmt.Sprintf("%s/%s", sz.name, order), func(b *testing.B) {
				const n = 1 << 16
				ctrs := make([]uint64, n)
				for i := range ctrs {
					ctrs[i] = uint64(i)
				}
				if order == "reordered" {
					rng := rand.New(rand.NewPCG(1, 2))
					for i := 0; i < n; i += 4096 {
						blk := ctrs[i:min(i+4096, n)]
						rng.Shuffle(len(blk), func(i, j int) { blk[i], blk[j] = blk[j], blk[i] })
					}
				}
				var w replayWindow
				b.ReportAllocs()
				var base uint64
				i := 0
				for b.Loop() {
					if !w.accept(base+ctrs[i], sz.blocks) {
						b.Fatal("refused")
					}
					if i++; i == n {
						i, base = 0, base+n
					}
				}
			})
		}
	}
}
