// Package mosquittotest runs the real mosquitto broker for tests: on a
// free port of 127.0.0.1 with a temporary configuration, killed when the
// test ends. Kill and Restart (on the same port) let tests cover a broker
// that dies and comes back. Without /usr/sbin/mosquitto (or mosquitto on
// PATH) Start skips the test with a message saying how to install it.
package mosquittotest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// NotFound is the skip message without mosquitto.
const NotFound = "mosquitto not found; apt-get install mosquitto"

// Broker is a running (or killed) mosquitto.
type Broker struct {
	t    testing.TB
	bin  string
	conf string
	Port int

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan error // of cmd
}

func find() string {
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/mosquitto"); err == nil {
		return "/usr/sbin/mosquitto"
	}
	return ""
}

// Start runs mosquitto with anonymous access and extra configuration
// lines (may be empty), and waits until it accepts connections.
func Start(t testing.TB, extra string) *Broker {
	t.Helper()
	bin := find()
	if bin == "" {
		t.Skip(NotFound)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	conf := filepath.Join(dir, "mosquitto.conf")
	text := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\nuser root\n%s\n", port, extra)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	b := &Broker{t: t, bin: bin, conf: conf, Port: port}
	b.Restart()
	t.Cleanup(b.Kill)
	return b
}

// Addr is host:port of the broker.
func (b *Broker) Addr() string { return "127.0.0.1:" + strconv.Itoa(b.Port) }

// URL is mqtt://host:port of the broker.
func (b *Broker) URL() string { return "mqtt://" + b.Addr() }

// Kill stops mosquitto at once (SIGKILL) and waits for it to exit.
func (b *Broker) Kill() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Kill()
	<-b.exited
	b.cmd = nil
}

// Restart starts mosquitto again on the same port (after Kill) and waits
// until it accepts connections.
func (b *Broker) Restart() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd != nil {
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		cmd := exec.Command(b.bin, "-c", b.conf)
		if err := cmd.Start(); err != nil {
			b.t.Fatalf("mosquitto: %v", err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		for {
			c, err := net.DialTimeout("tcp", b.Addr(), time.Second)
			if err == nil {
				c.Close()
				b.cmd, b.exited = cmd, exited
				return
			}
			select {
			case err := <-exited: // the port may still be held: try again
				if time.Now().After(deadline) {
					b.t.Fatalf("mosquitto exited: %v", err)
				}
			case <-time.After(20 * time.Millisecond):
				if time.Now().After(deadline) {
					_ = cmd.Process.Kill()
					b.t.Fatal("mosquitto does not accept connections")
				}
				continue
			}
			break
		}
	}
}
