package natsblob_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/moteiot/mote/internal/blob"
	"github.com/moteiot/mote/internal/blob/blobtest"
	"github.com/moteiot/mote/internal/blob/natsblob"
)

// startServer starts an embedded nats-server with JetStream on a random
// loopback port, its store in a temporary directory.
func startServer(t *testing.T) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

func TestConformance(t *testing.T) {
	srv := startServer(t)
	n := 0
	blobtest.Run(t, blobtest.Backend{
		Open: func(t *testing.T) blob.Store {
			nc, err := nats.Connect(srv.ClientURL())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(nc.Close)
			n++
			s, err := natsblob.Open(context.Background(), natsblob.Options{Conn: nc, Bucket: fmt.Sprintf("test%d", n)})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	})
}

// TestServerGone: a Put against a stopped server fails with an error,
// within the request's deadline.
func TestServerGone(t *testing.T) {
	srv := startServer(t)
	nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(0))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	s, err := natsblob.Open(context.Background(), natsblob.Options{Conn: nc})
	if err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()
	srv.WaitForShutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := s.Stat(ctx, "x"); err == nil {
		t.Fatal("Stat with the server gone: no error")
	}
}

// TestReadsFromTheLeader: the bucket's stream does not answer reads from
// its followers (direct get), which may not have an object just stored
// through another node yet; opening an existing bucket again (which
// nats.go creates with direct get) keeps it so.
func TestReadsFromTheLeader(t *testing.T) {
	srv := startServer(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := natsblob.Open(context.Background(), natsblob.Options{Conn: nc, Bucket: "leader"}); err != nil {
			t.Fatal(err)
		}
		st, err := js.Stream(context.Background(), "OBJ_leader")
		if err != nil {
			t.Fatal(err)
		}
		if st.CachedInfo().Config.AllowDirect {
			t.Fatal("the bucket's stream allows direct gets (reads from followers)")
		}
	}
}
