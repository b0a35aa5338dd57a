//go:build !race

package credentials_test

import "time"

// revokeDeadline is how long revoked credentials may take to be refused
// everywhere: the 1 s the product promises (docs/credentials.md).
const revokeDeadline = time.Second
