//go:build race

package hub

// raceEnabled: the race detector is on (and crypto ten times slower).
const raceEnabled = true
