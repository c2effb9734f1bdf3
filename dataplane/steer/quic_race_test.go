//go:build race

package steer

// raceEnabled: the race detector changes what escapes, so allocation counts.
const raceEnabled = true
