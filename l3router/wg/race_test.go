//go:build race

package wg

// raceEnabled: the race detector slows the tests that work at scale,
// which then do less.
const raceEnabled = true
