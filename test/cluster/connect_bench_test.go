package cluster_test

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/pgtest"
)

// BenchmarkConnectClusterNode: one authenticated MQTT 3.1.1 connect
// (clean session, a new client id each time, closed after its CONNACK) to
// a node alone and to a cluster node, both on PostgreSQL; the cluster
// node is on one in-process nats-server with JetStream (one replica) and
// asks it which thing holds each new client id. The difference is what
// cluster mode costs a connect.
//
//	go test -run '^$' -bench ConnectClusterNode -benchtime 2000x -count 3 ./test/cluster/
func BenchmarkConnectClusterNode(b *testing.B) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		b.Fatal("nats server not ready")
	}
	b.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	noLimit := func(cfg *config.Config) { cfg.DeviceRateLimit = 0 }
	alone := daemontest.Start(b, daemontest.WithStore(pgtest.DB(b)), noLimit)
	node := daemontest.Start(b, daemontest.WithStore(pgtest.DB(b)), noLimit, func(cfg *config.Config) {
		cfg.Cluster = ns.ClientURL()
		cfg.NodeID = "node-0"
		cfg.ClusterReplicas = 1
	})
	for _, tc := range []struct {
		name string
		s    *daemontest.Server
	}{{"alone", alone}, {"cluster", node}} {
		secret := tc.s.Device(b, "bench")
		b.Run(tc.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				i++
				c, err := connectV3(tc.s.MQTT, fmt.Sprintf("bench-%d", i), "bench", secret)
				if err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}

// connectV3 dials addr and sends an MQTT 3.1.1 CONNECT (clean session,
// user name and password); it returns the connection once CONNACK 0 came.
func connectV3(addr, clientID, user, pass string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	str := func(b []byte, s string) []byte { return append(append(b, byte(len(s)>>8), byte(len(s))), s...) }
	body := str(nil, "MQTT")
	body = append(body, 4, 0xC2, 0x01, 0x2C) // level 4; user name, password, clean session; keep alive 300 s
	body = str(body, clientID)
	body = str(body, user)
	body = str(body, pass)
	pk := []byte{0x10}
	for n := len(body); ; { // remaining length
		d := byte(n % 128)
		if n /= 128; n > 0 {
			d |= 0x80
		}
		pk = append(pk, d)
		if n == 0 {
			break
		}
	}
	pk = append(pk, body...)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(pk); err != nil {
		c.Close()
		return nil, fmt.Errorf("write CONNECT: %w", err)
	}
	var ack [4]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil {
		c.Close()
		return nil, fmt.Errorf("read CONNACK: %w", err)
	}
	if ack[0] != 0x20 || ack[1] != 2 || ack[3] != 0 {
		c.Close()
		return nil, fmt.Errorf("CONNACK % x; want 20 02 00 00", ack)
	}
	return c, nil
}
