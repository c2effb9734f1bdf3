//go:build race

package wg

// raceEnabled: the race detector is on. sync.Pool then drops a quarter of
// what is put back, on purpose, so pooled paths allocate.
const raceEnabled = true
