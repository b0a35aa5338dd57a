package jsasync

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func setup(t *testing.T) (jetstream.JetStream, *[]string) {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true, JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	return js, new([]string)
}

func newPublisher(js jetstream.JetStream, reasons *[]string) *Publisher {
	return New(js, Options{AckTimeout: 500 * time.Millisecond, MaxPending: 8,
		Refuse: func(reason string, err error) error { *reasons = append(*reasons, reason); return err }})
}

// TestPublish: stored ⇒ nil; the second wait's error is the result; a
// subject no stream takes and a closed publisher are refused.
func TestPublish(t *testing.T) {
	js, reasons := setup(t)
	p := newPublisher(js, reasons)
	done, err := p.Publish(&nats.Msg{Subject: "t.a", Data: []byte("x")}, nil)
	if err != nil || <-done != nil {
		t.Fatalf("Publish = %v", err)
	}
	also := make(chan error, 1)
	bad := errors.New("the other store failed")
	also <- bad
	done, err = p.Publish(&nats.Msg{Subject: "t.b", Data: []byte("x")}, also)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, bad) {
		t.Fatalf("done = %v; want the second wait's error", err)
	}
	done, err = p.Publish(&nats.Msg{Subject: "nostream", Data: []byte("x")}, nil)
	if err == nil {
		err = <-done
	}
	if err == nil {
		t.Fatal("a publish no stream stored was not refused")
	}
	p.Close()
	if _, err := p.Publish(&nats.Msg{Subject: "t.c"}, nil); err == nil {
		t.Fatal("a closed publisher took a publish")
	}
	if n := len(*reasons); n != 2 || (*reasons)[1] != "closed" {
		t.Errorf("refusals = %v; want [<no stream> closed]", *reasons)
	}
}

// TestPublishDeadline: a second wait that never ends is refused at the
// deadline.
func TestPublishDeadline(t *testing.T) {
	js, reasons := setup(t)
	p := newPublisher(js, reasons)
	defer p.Close()
	start := time.Now()
	done, err := p.Publish(&nats.Msg{Subject: "t.a", Data: []byte("x")}, make(chan error))
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Fatal("done = nil; want a timeout")
	}
	if len(*reasons) != 1 || (*reasons)[0] != "timeout" {
		t.Errorf("refusals = %v; want [timeout]", *reasons)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("refused after %s; want the 500ms deadline", d)
	}
}

func TestReasonOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{jetstream.ErrAsyncPublishTimeout, "timeout"},
		{context.DeadlineExceeded, "timeout"},
		{errors.New("nats: maximum bytes exceeded"), "full"},
		{errors.New("other"), "error"},
	} {
		if got := ReasonOf(tc.err); got != tc.want {
			t.Errorf("ReasonOf(%v) = %s; want %s", tc.err, got, tc.want)
		}
	}
}
