package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/core"
)

// BodyTimeout gives a request body d to arrive, counted from the moment
// the handler is called (the headers have their own ReadHeaderTimeout):
// a client that trickles a large body is cut off instead of holding a
// connection and a file descriptor. The deadline is set on the connection
// with http.ResponseController and cleared as soon as the body has been
// read to its end, so a handler that then waits — a direct method call, a
// long poll — is not cut off. Requests without a body (GET long polls, the
// event stream, the WebSocket upgrade at /mqtt) get no deadline at all.
// This replaces http.Server.ReadTimeout, which would also end those.
func BodyTimeout(next http.Handler, d time.Duration) http.Handler {
	if d <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(d)); err == nil {
			r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
		}
		next.ServeHTTP(w, r)
	})
}

// deadlineBody clears the connection's read deadline once the body has
// been read to its end. (net/http's background read clears it too when
// it starts at the body's end; this does not rely on that.)
type deadlineBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	cleared bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) && !b.cleared {
		b.cleared = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// longPolls counts the command long polls each thing holds open, so that
// one device (or a stolen secret) cannot hold an unbounded number of
// connections and goroutines.
type longPolls struct {
	max     int
	refused prometheus.Counter // may be nil
	held    prometheus.Gauge   // may be nil
	mu      sync.Mutex
	open    map[string]int
}

func newLongPolls(max int, refused prometheus.Counter, held prometheus.Gauge) *longPolls {
	if max <= 0 {
		max = 4
	}
	return &longPolls{max: max, refused: refused, held: held, open: map[string]int{}}
}

// acquire takes a slot for thing, or refuses with a KindRateLimited
// error (429) when it already holds max; release gives the slot back.
func (l *longPolls) acquire(thing string) (release func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[thing] >= l.max {
		if l.refused != nil {
			l.refused.Inc()
		}
		return nil, core.Errorf(core.KindRateLimited, "thing %q already holds %d command long polls, the most allowed (--max-long-polls-per-device); wait for one to end", thing, l.max)
	}
	l.open[thing]++
	if l.held != nil {
		l.held.Inc()
	}
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.open[thing]--; l.open[thing] <= 0 {
			delete(l.open, thing)
		}
		if l.held != nil {
			l.held.Dec()
		}
	}, nil
}

// maxJSONDepth bounds the nesting checkDuplicateKeys follows (the decoder
// itself allows 10,000 levels; no Mote body needs more than a few dozen).
const maxJSONDepth = 1000

// checkDuplicateKeys walks a JSON document token by token and refuses an
// object that names a key twice, at any depth: encoding/json would keep
// the last one silently, so {"role":"viewer","role":"admin"} would mean
// admin to Mote and perhaps viewer to a proxy or an audit log that read
// the first. Syntax errors are left to the real decode, which reports
// them better.
func checkDuplicateKeys(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := walkJSON(dec, "", 0); !errors.Is(err, errStopWalk) {
		return err
	}
	return nil
}

// errStopWalk ends the walk at a syntax error or at maxJSONDepth.
var errStopWalk = errors.New("stop")

// walkJSON reads one value; path names it in an error ("a.b[2].c").
func walkJSON(dec *json.Decoder, path string, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		return errStopWalk
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	if depth >= maxJSONDepth {
		return errStopWalk
	}
	switch d {
	case '{':
		keys := map[string]struct{}{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return errStopWalk
			}
			key, _ := kt.(string)
			field := key
			if path != "" {
				field = path + "." + key
			}
			if _, dup := keys[key]; dup {
				return core.Invalid(field, "duplicate key %q in the JSON request body", field)
			}
			keys[key] = struct{}{}
			if err := walkJSON(dec, field, depth+1); err != nil {
				return err
			}
		}
	case '[':
		for i := 0; dec.More(); i++ {
			if err := walkJSON(dec, path+"["+strconv.Itoa(i)+"]", depth+1); err != nil {
				return err
			}
		}
	default:
		return errStopWalk
	}
	if _, err := dec.Token(); err != nil { // the closing delimiter
		return errStopWalk
	}
	return nil
}

// pageAfter is core.PageAfter: a page of a store list without losing the
// cursor of a full page at the stores' cap.
func pageAfter[T any](after string, limit int, list func(after string, n int) ([]T, error), key func(T) string) ([]T, string, error) {
	return core.PageAfter(after, limit, list, key)
}
