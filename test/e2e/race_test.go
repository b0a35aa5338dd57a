//go:build race

package e2e

// raceEnabled: the test binary runs with the race detector, so the mote
// binary under test is built with -race too.
const raceEnabled = true
