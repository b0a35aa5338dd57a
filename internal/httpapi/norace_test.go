//go:build !race

package httpapi_test

// raceEnabled: the test binary runs under the race detector.
const raceEnabled = false
