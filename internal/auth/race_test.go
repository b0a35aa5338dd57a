//go:build race

package auth

// raceEnabled: the race detector is on, and sync.Pool drops a share of
// what is put back, so allocation counts are not meaningful.
const raceEnabled = true
