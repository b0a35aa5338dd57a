package broker

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/auth"
)

// TestLazyTimeout: the context a connect authenticates with starts no
// timer until something waits on it, and then behaves as
// context.WithTimeout.
func TestLazyTimeout(t *testing.T) {
	t.Parallel()
	t.Run("cache hit", func(t *testing.T) {
		ctx, cancel := newLazyTimeout(time.Hour)
		if d, ok := ctx.Deadline(); !ok || time.Until(d) < 59*time.Minute {
			t.Errorf("Deadline() = %v, %v; want an hour from now, true", d, ok)
		}
		if err := ctx.Err(); err != nil {
			t.Errorf("Err() = %v; want nil", err)
		}
		if ctx.inner != nil {
			t.Errorf("a timer was started without a Done")
		}
		cancel()
		if err := ctx.Err(); !errors.Is(err, context.Canceled) {
			t.Errorf("Err() after cancel = %v; want context.Canceled", err)
		}
		select {
		case <-ctx.Done():
		default:
			t.Errorf("Done() after cancel is not closed")
		}
	})
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := newLazyTimeout(20 * time.Millisecond)
		defer cancel()
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("Done() not closed 5 s after a 20 ms deadline")
		}
		if err := ctx.Err(); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Err() after the deadline = %v; want context.DeadlineExceeded", err)
		}
	})
	t.Run("deadline passed, nobody waited", func(t *testing.T) {
		ctx, cancel := newLazyTimeout(-time.Second)
		defer cancel()
		if err := ctx.Err(); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Err() = %v; want context.DeadlineExceeded", err)
		}
	})
	t.Run("cancel while waited on", func(t *testing.T) {
		ctx, cancel := newLazyTimeout(time.Hour)
		done := ctx.Done()
		go cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Done() not closed by cancel")
		}
		if err := ctx.Err(); !errors.Is(err, context.Canceled) {
			t.Errorf("Err() = %v; want context.Canceled", err)
		}
	})
}

// waitingAuth is an authenticator whose lookup waits for its context, as
// a store read that does not answer; it reports what ended the wait.
type waitingAuth struct{ ended chan error }

func (a waitingAuth) Secret(ctx context.Context, _, _ string) (auth.Identity, error) {
	select {
	case <-ctx.Done():
		a.ended <- ctx.Err()
		return auth.Identity{}, ctx.Err()
	case <-time.After(10 * time.Second):
		a.ended <- errors.New("not ended by the connect timeout")
		return auth.Identity{}, errors.New("timeout")
	}
}

func (waitingAuth) Certificate(context.Context, *x509.Certificate) (auth.Identity, error) {
	return auth.Identity{}, auth.ErrUnknownCertificate
}

// TestConnectLookupHasDeadline: a connect whose lookup misses the caches
// still has ConnectTimeout to get an answer, and is refused after it.
func TestConnectLookupHasDeadline(t *testing.T) {
	t.Parallel()
	a := waitingAuth{ended: make(chan error, 1)}
	b, err := New(Options{
		MQTTAddr:       "127.0.0.1:0",
		Auth:           a,
		Policies:       &heldPolicies{topic: "x"},
		ConnectTimeout: 300 * time.Millisecond,
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	start := time.Now()
	go func() { // its answer is not the point here; Close ends it
		if c, err := connect3(b, "slow"); err == nil {
			c.Disconnect(0)
		}
	}()
	if err := receive(t, a.ended, "the end of the lookup"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the lookup ended with %v; want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the lookup ended after %v; want about the 300 ms connect timeout", d)
	}
}
