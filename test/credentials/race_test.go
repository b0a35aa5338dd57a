//go:build race

package credentials_test

import "time"

// revokeDeadline is how long revoked credentials may take to be refused
// everywhere: the 1 s the product promises, times three under the race
// detector, which slows every goroutine of client and server alike.
const revokeDeadline = 3 * time.Second
