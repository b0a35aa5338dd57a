package loadgen

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuClock samples the CPU time of this process and, when pid > 0, of the
// broker, to report both as % of one core over a window.
type cpuClock struct {
	pid        int
	wall       time.Time
	self, peer time.Duration
	peerOK     bool
}

func startCPU(pid int) cpuClock {
	c := cpuClock{pid: pid, wall: time.Now(), self: selfCPU()}
	c.peer, c.peerOK = procCPU(pid)
	return c
}

// pct returns the CPU % of one core of this process and of the broker
// (-1 when unknown) since start.
func (c cpuClock) pct() (self, broker float64) {
	wall := time.Since(c.wall)
	if wall <= 0 {
		return 0, -1
	}
	self = 100 * float64(selfCPU()-c.self) / float64(wall)
	broker = -1
	if p, ok := procCPU(c.pid); ok && c.peerOK {
		broker = 100 * float64(p-c.peer) / float64(wall)
	}
	return self, broker
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU reads utime+stime of pid from /proc (Linux; clock ticks of
// 1/100 s, the value on every Linux platform Go supports).
func procCPU(pid int) (time.Duration, bool) {
	if pid <= 0 {
		return 0, false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	// After the command: state is field 3, utime 14 and stime 15.
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(u+st) * 10 * time.Millisecond, true
}
