//go:build !race

package wg

// raceEnabled: the race detector is on (see race_test.go).
const raceEnabled = false
