//go:build race

package edge

// raceEnabled: the race detector is on, and sync.Pool drops a share of
// what is put back on purpose, so allocation counts say nothing.
const raceEnabled = true
