//go:build !unix

package fleetindex

import "time"

func cpuTime() time.Duration { return 0 }
