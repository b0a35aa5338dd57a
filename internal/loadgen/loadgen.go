// Package loadgen is the engine of `mote bench`: an MQTT 3.1.1 load
// generator that works against any broker. It runs one scenario per call
// to Run (fan-in, fan-out, pairs, idle connections, connect rate) and
// returns a Result that is printed as one JSON line.
//
// Every payload starts with the send time (nanoseconds since the run
// started, taken just before the socket write), the publisher's index and
// a sequence number, so each subscriber knows which messages it should
// have received: Result.Lost and Result.Dup come from that accounting, and
// latency from the one monotonic clock both ends share. Publisher and
// subscriber run in the same process.
//
// Every run is bounded: Count and Duration bound publishing, Drain and
// MaxDrain the wait for deliveries, and the caller's context the whole
// run (closing every connection when it ends).
package loadgen

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Topologies.
const (
	FanIn   = "fanin"   // Pubs publishers, each on its own topic → Subs subscribers on a + wildcard
	FanOut  = "fanout"  // Pubs publishers → Subs subscribers, all on one topic
	Pairs   = "pairs"   // publisher i → subscriber i on topic i (Subs = Pubs)
	Idle    = "idle"    // Conns connections held open, then one subscription each
	Connect = "connect" // Conns connections opened and closed: connects/s
)

// HeaderSize is the smallest payload: send time, publisher, sequence.
const HeaderSize = 16

// maxSize is the largest payload.
const maxSize = 256 << 10

// Options describe one run. Zero values take the defaults of
// DefaultOptions where noted.
type Options struct {
	// Addr is host:port of the broker, or a comma-separated list of the
	// nodes of a cluster: publisher i (and idle or connect connection i)
	// dials address i mod n, subscriber i address (i+1) mod n, so that
	// with several addresses a pair's messages always cross nodes and a
	// fan-in's do from every publisher not on the subscriber's node.
	Addr               string
	TLS                *tls.Config // nil: plain TCP
	Username, Password string
	Root               string // first topic level(s) of every topic
	Broker, Scenario   string // labels for the output
	Topology           string
	Pubs, Subs         int
	QoS                byte
	Size               int // payload bytes, at least HeaderSize
	Count              int // messages to publish in total, split across publishers
	Duration           time.Duration
	Rate               float64 // total msgs/s; 0: as fast as possible (saturation)
	Inflight           int     // QoS 1: unacknowledged PUBLISHes per publisher
	Drain              time.Duration
	MaxDrain           time.Duration
	Conns, Dialers     int // idle and connect
	IdleSubscribe      bool
	Settle             time.Duration // idle: hold before reading RSS
	Keepalive          uint16
	DialTimeout        time.Duration
	BrokerPID          int // read the broker's RSS from /proc (0: skip)

	// killSubAfter makes subscriber 0 drop its connection after this many
	// deliveries (tests: the accounting must report the rest as lost).
	killSubAfter int64
}

// DefaultOptions returns the defaults of `mote bench`.
func DefaultOptions() Options {
	return Options{
		Addr: "127.0.0.1:1883", Root: "bench", Broker: "unknown", Topology: FanIn,
		Pubs: 50, Subs: 1, Size: 64, Count: 100_000, Duration: 10 * time.Second,
		Inflight: 16, Drain: 2 * time.Second, MaxDrain: 15 * time.Second,
		Conns: 1000, Dialers: 32, IdleSubscribe: true, Settle: 3 * time.Second,
		Keepalive: 300, DialTimeout: 10 * time.Second,
	}
}

// Validate checks the options and names the offending one.
func (o *Options) Validate() error {
	switch o.Topology {
	case FanIn, FanOut, Pairs, Idle, Connect:
	default:
		return fmt.Errorf("topology %q: want fanin, fanout, pairs, idle or connect", o.Topology)
	}
	for a := range strings.SplitSeq(o.Addr, ",") {
		if a == "" {
			return fmt.Errorf("addr %q: empty address", o.Addr)
		}
	}
	if o.QoS > 1 {
		return fmt.Errorf("qos %d: want 0 or 1", o.QoS)
	}
	if o.Topology == Idle || o.Topology == Connect {
		if o.Conns < 1 || o.Dialers < 1 {
			return fmt.Errorf("conns %d, dialers %d: want at least 1", o.Conns, o.Dialers)
		}
	} else {
		if o.Pubs < 1 || o.Subs < 1 {
			return fmt.Errorf("pubs %d, subs %d: want at least 1", o.Pubs, o.Subs)
		}
		if o.Topology == Pairs && o.Subs != o.Pubs {
			return fmt.Errorf("subs %d: pairs needs as many subscribers as publishers (%d)", o.Subs, o.Pubs)
		}
		if o.Size < HeaderSize || o.Size > maxSize {
			return fmt.Errorf("size %d: want %d to %d bytes", o.Size, HeaderSize, maxSize)
		}
		if o.Count < 1 || o.Count > 1<<31 {
			return fmt.Errorf("count %d: want 1 to %d", o.Count, 1<<31)
		}
		if o.Duration <= 0 || o.Drain <= 0 || o.MaxDrain <= 0 {
			return errors.New("duration, drain and maxdrain: want positive")
		}
		if o.Rate < 0 {
			return fmt.Errorf("rate %g: want 0 (saturation) or more", o.Rate)
		}
		if o.QoS == 1 && (o.Inflight < 1 || o.Inflight > 65535) {
			return fmt.Errorf("inflight %d: want 1 to 65535", o.Inflight)
		}
	}
	if o.DialTimeout <= 0 {
		return errors.New("dial-timeout: want positive")
	}
	return nil
}

// Result is one run, printed as one JSON line. Latencies are in
// microseconds, from the publisher's write to the subscriber's parse.
type Result struct {
	Time     string  `json:"time"`
	Broker   string  `json:"broker"`
	Scenario string  `json:"scenario"`
	Topology string  `json:"topology"`
	Addr     string  `json:"addr"`
	TLS      bool    `json:"tls"`
	QoS      int     `json:"qos"`
	Pubs     int     `json:"pubs,omitempty"`
	Subs     int     `json:"subs,omitempty"`
	Size     int     `json:"size,omitempty"`
	Rate     float64 `json:"rate"`

	Sent       int64   `json:"sent"`     // PUBLISHes written
	Acked      int64   `json:"acked"`    // QoS 1: PUBACKs received
	Expected   int64   `json:"expected"` // deliveries the subscribers should get
	Received   int64   `json:"received"` // distinct deliveries
	Lost       int64   `json:"lost"`
	Dup        int64   `json:"dup"`
	Foreign    int64   `json:"foreign,omitempty"` // deliveries not from this run
	LostPct    float64 `json:"lost_pct"`
	MsgsPerSec float64 `json:"msgs_per_sec"`     // distinct deliveries / (first publish → last delivery)
	PubPerSec  float64 `json:"pub_msgs_per_sec"` // PUBLISHes written / publish_s
	PubSeconds float64 `json:"publish_s"`
	Seconds    float64 `json:"elapsed_s"`
	P50        float64 `json:"p50_us"`
	P90        float64 `json:"p90_us"`
	P99        float64 `json:"p99_us"`
	Max        float64 `json:"max_us"`
	Mean       float64 `json:"mean_us"`

	// % of one core from the first publish to the end of the drain
	// (idle, connect: over the connects);
	// broker_cpu_pct needs --pid (-1: unknown). Compare the two before
	// reading a saturation figure as the broker's limit.
	LoadgenCPU float64 `json:"loadgen_cpu_pct"`
	BrokerCPU  float64 `json:"broker_cpu_pct"`

	Conns          int     `json:"conns,omitempty"`
	ConnectErrors  int     `json:"connect_errors,omitempty"`
	ConnectsPerSec float64 `json:"connects_per_sec,omitempty"`
	SubscribesPerS float64 `json:"subscribes_per_sec,omitempty"`
	RSSBeforeMB    float64 `json:"rss_before_mb,omitempty"`
	RSSConnMB      float64 `json:"rss_connected_mb,omitempty"`
	RSSSubMB       float64 `json:"rss_subscribed_mb,omitempty"`
	KBPerConn      float64 `json:"kb_per_conn,omitempty"`

	Error string `json:"error,omitempty"` // the first error that cut the run short
}

// Run runs one scenario. It returns an error only when the run could not
// start (bad options, a connection or subscription refused); errors after
// that end the run early and are reported in Result.Error.
func Run(ctx context.Context, o Options) (Result, error) {
	if err := o.Validate(); err != nil {
		return Result{}, fmt.Errorf("loadgen: %w", err)
	}
	r := Result{
		Time: time.Now().UTC().Format(time.RFC3339), Broker: o.Broker, Scenario: o.Scenario,
		Topology: o.Topology, Addr: o.Addr, TLS: o.TLS != nil, QoS: int(o.QoS), Rate: o.Rate,
	}
	if r.Scenario == "" {
		r.Scenario = o.Topology + "-qos" + strconv.Itoa(int(o.QoS))
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	run := &runState{o: o, id: hex.EncodeToString(b[:])}
	switch o.Topology {
	case Idle, Connect:
		r.Conns = o.Conns
		return r, run.conns(ctx, &r)
	default:
		r.Pubs, r.Subs, r.Size = o.Pubs, o.Subs, o.Size
		return r, run.load(ctx, &r)
	}
}

type runState struct {
	o     Options
	id    string
	start time.Time
}

// addr returns broker address number n (modulo the count) of Addr.
func (o *Options) addr(n int) string {
	if !strings.Contains(o.Addr, ",") {
		return o.Addr
	}
	as := strings.Split(o.Addr, ",")
	return as[n%len(as)]
}

func (s *runState) clientID(kind string, i int) string {
	return "mb-" + s.id + "-" + kind + strconv.Itoa(i)
}

func (s *runState) topic(parts ...string) string {
	return strings.TrimSuffix(s.o.Root, "/") + "/" + s.id + "/" + strings.Join(parts, "/")
}

// now is nanoseconds since the run started, from the monotonic clock.
func (s *runState) now() int64 { return int64(time.Since(s.start)) }

// closeAll closes every connection when ctx ends or done is closed.
type closer struct {
	mu    sync.Mutex
	conns []*conn
	done  bool
}

func (c *closer) add(x *conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		x.nc.Close()
		return false
	}
	c.conns = append(c.conns, x)
	return true
}

func (c *closer) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done = true
	for _, x := range c.conns {
		x.nc.Close()
	}
	c.conns = nil
}

func readRSSMB(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// conns runs the idle and connect scenarios.
func (s *runState) conns(ctx context.Context, r *Result) error {
	o := &s.o
	cl := &closer{}
	defer cl.closeAll()
	stop := context.AfterFunc(ctx, cl.closeAll)
	defer stop()
	r.RSSBeforeMB = readRSSMB(o.BrokerPID)

	held := make([]*conn, o.Conns)
	var next, failed atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	cpu := startCPU(o.BrokerPID)
	start := time.Now()
	for range min(o.Dialers, o.Conns) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= o.Conns || ctx.Err() != nil {
					return
				}
				c, err := dial(ctx, o, i, s.clientID("c", i))
				if err != nil {
					failed.Add(1)
					errOnce.Do(func() { firstErr = err })
					continue
				}
				if o.Topology == Connect {
					c.nc.Close()
					continue
				}
				if cl.add(c) {
					held[i] = c
				}
			}
		})
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	r.LoadgenCPU, r.BrokerCPU = cpu.pct()
	r.ConnectErrors = int(failed.Load())
	ok := o.Conns - r.ConnectErrors
	r.ConnectsPerSec = float64(ok) / el
	r.Seconds = el
	if firstErr != nil {
		r.Error = firstErr.Error()
	}
	if ok == 0 {
		return fmt.Errorf("loadgen: %s: no connection succeeded: %w", o.Topology, firstErr)
	}
	if err := ctx.Err(); err != nil {
		r.Error = "interrupted: " + err.Error()
		return nil
	}
	if o.Topology == Connect {
		return nil
	}
	if o.BrokerPID > 0 {
		if !sleepCtx(ctx, o.Settle) {
			return nil
		}
		r.RSSConnMB = readRSSMB(o.BrokerPID)
		r.KBPerConn = (r.RSSConnMB - r.RSSBeforeMB) * 1024 / float64(ok)
	}
	if !o.IdleSubscribe {
		return nil
	}
	next.Store(0)
	start = time.Now()
	var subFailed atomic.Int64
	for range min(o.Dialers, o.Conns) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= o.Conns || ctx.Err() != nil {
					return
				}
				if held[i] == nil {
					continue
				}
				if err := held[i].subscribe(s.topic("idle", strconv.Itoa(i)), o.QoS, o.DialTimeout); err != nil {
					subFailed.Add(1)
					errOnce.Do(func() { firstErr = err })
				}
			}
		})
	}
	wg.Wait()
	r.SubscribesPerS = float64(ok-int(subFailed.Load())) / time.Since(start).Seconds()
	if firstErr != nil && r.Error == "" {
		r.Error = firstErr.Error()
	}
	if o.BrokerPID > 0 && sleepCtx(ctx, o.Settle) {
		r.RSSSubMB = readRSSMB(o.BrokerPID)
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
