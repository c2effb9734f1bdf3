//go:build !race

package hub

// raceEnabled: the race detector is on (see race_test.go).
const raceEnabled = false
