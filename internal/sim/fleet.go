// Package sim is Mote's device simulator (`mote sim`): a fleet of simulated
// sensors that are provisioned through the REST API (Provision) and then
// connect over MQTT 5 (Fleet), each publishing realistic telemetry, keeping
// its reported shadow, applying desired state, executing commands and
// answering direct methods. See docs/simulator.md.
package sim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moteiot/mote/internal/core"
)

// Defaults and bounds of a Fleet.
const (
	DefaultRate        = 1.0 // telemetry messages per second per device
	MaxRate            = 100.0
	MinRate            = 0.001
	DefaultKeepAlive   = 30 * time.Second
	DefaultRebootDelay = 2 * time.Second
	maxBackoff         = 30 * time.Second
)

// Options tune a Fleet.
type Options struct {
	MQTTAddr string      // host:port of the broker's MQTT (or, with TLS, MQTTS) listener
	TLS      *tls.Config // non-nil: connect over TLS
	// Rate is telemetry messages per second per device (MinRate..MaxRate);
	// 0 means DefaultRate.
	Rate float64
	// QoS of telemetry messages: 0 or 1. Everything else (shadow, command
	// results, method answers) is sent at QoS 1.
	QoS byte
	// Parallel bounds the connects in flight; 0 means DefaultParallel.
	Parallel    int
	KeepAlive   time.Duration // 0 means DefaultKeepAlive
	RebootDelay time.Duration // how long a "reboot" keeps a device offline; 0 means DefaultRebootDelay
	// OTAFailureRate is the fraction (0..1) of jobs a device fails on
	// purpose (--ota-failure-rate). HTTPClient downloads what a job
	// document names (nil: one trusting TLS.RootCAs).
	OTAFailureRate float64
	HTTPClient     *http.Client
	// APIBase is the server's root URL ("http://127.0.0.1:8080"): a job
	// document's relative download URL (a signed artifact URL when the
	// server has no --artifact-url-base) is resolved against it.
	APIBase string
	Logger  *slog.Logger // nil discards
	// Scenario, if set, drives the first device into tripping a detector
	// (mote sim --scenario).
	Scenario *Scenario
}

// Stats are the fleet's counters since it started.
type Stats struct {
	Devices    int   `json:"devices"`
	Connected  int   `json:"connected"`  // devices connected now
	Sent       int64 `json:"sent"`       // telemetry messages sent (acknowledged at QoS 1)
	Commands   int64 `json:"commands"`   // commands executed (whatever their result)
	Methods    int64 `json:"methods"`    // direct methods answered
	Deltas     int64 `json:"deltas"`     // shadow deltas applied
	Reconnects int64 `json:"reconnects"` // connects after the first one (lost connections, reboots)
	Jobs       int64 `json:"jobs"`       // job executions run
	JobsFailed int64 `json:"jobsFailed"` // of those, reported FAILED
	Errors     int64 `json:"errors"`
	// AllConnected is how long after Run every device was first connected
	// at once (0 until then).
	AllConnected time.Duration `json:"-"`
	LastError    string        `json:"lastError,omitempty"`
}

// Fleet runs simulated devices over MQTT.
type Fleet struct {
	opts Options
	ids  []Identity
	log  *slog.Logger
	sem  chan struct{} // bounds connects in flight

	connected, sent, commands, methods, deltas, reconnects, errs atomic.Int64
	lastErr                                                      atomic.Pointer[string]
	started                                                      time.Time
	allConnected                                                 atomic.Int64 // nanoseconds after started
	jobs, jobsFailed                                             atomic.Int64

	httpOnce sync.Once
	http     *http.Client
}

// NewFleet returns a fleet of the provisioned devices; Run starts it.
func NewFleet(ids []Identity, o Options) (*Fleet, error) {
	if o.MQTTAddr == "" {
		return nil, core.Invalid("mqtt", "the MQTT address is required")
	}
	if o.Rate == 0 {
		o.Rate = DefaultRate
	}
	if o.Rate < MinRate || o.Rate > MaxRate {
		return nil, core.Invalid("rate", "rate must be between %g and %g messages per second per device, not %g", MinRate, MaxRate, o.Rate)
	}
	if o.OTAFailureRate < 0 || o.OTAFailureRate > 1 {
		return nil, core.Invalid("ota-failure-rate", "ota-failure-rate must be between 0 and 1, not %g", o.OTAFailureRate)
	}
	if o.QoS > 1 {
		return nil, core.Invalid("qos", "telemetry QoS must be 0 or 1, not %d", o.QoS)
	}
	if o.Parallel <= 0 {
		o.Parallel = DefaultParallel
	}
	if o.KeepAlive <= 0 {
		o.KeepAlive = DefaultKeepAlive
	}
	if o.RebootDelay <= 0 {
		o.RebootDelay = DefaultRebootDelay
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Fleet{opts: o, ids: ids, log: log.With("component", "sim"), sem: make(chan struct{}, o.Parallel)}, nil
}

// Run connects every device and runs them until ctx is done; then each
// sends an MQTT DISCONNECT and Run returns nil once all are stopped.
// Failures of single devices (refused connects, lost connections, refused
// publishes) are counted in Stats and retried, never returned.
func (f *Fleet) Run(ctx context.Context) error {
	f.started = time.Now()
	var wg sync.WaitGroup
	for i, id := range f.ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			newDevice(f, id, i).run(ctx)
		}()
	}
	wg.Wait()
	return nil
}

// Stats returns the counters.
func (f *Fleet) Stats() Stats {
	s := Stats{
		Devices:    len(f.ids),
		Connected:  int(f.connected.Load()),
		Sent:       f.sent.Load(),
		Commands:   f.commands.Load(),
		Methods:    f.methods.Load(),
		Deltas:     f.deltas.Load(),
		Reconnects: f.reconnects.Load(),
		Errors:     f.errs.Load(),
		Jobs:       f.jobs.Load(),
		JobsFailed: f.jobsFailed.Load(),

		AllConnected: time.Duration(f.allConnected.Load()),
	}
	if p := f.lastErr.Load(); p != nil {
		s.LastError = *p
	}
	return s
}

// connectedNow counts a device in and records when all are first in.
func (f *Fleet) connectedNow() {
	if int(f.connected.Add(1)) == len(f.ids) && f.allConnected.Load() == 0 {
		f.allConnected.CompareAndSwap(0, int64(max(time.Since(f.started), 1)))
	}
}

// fail counts an error of one device and keeps it as the last error.
func (f *Fleet) fail(thing, what string, err error) {
	f.errs.Add(1)
	msg := fmt.Sprintf("%s: %s: %v", thing, what, err)
	f.lastErr.Store(&msg)
	f.log.Debug("device error", "thing", thing, "op", what, "err", err)
}

// acquire takes a connect slot; false if ctx ended first.
func (f *Fleet) acquire(ctx context.Context) bool {
	select {
	case f.sem <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (f *Fleet) release() { <-f.sem }

// sleep waits d or until ctx is done; false if ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// errConnectionLost ends a session whose connection went away.
var errConnectionLost = errors.New("connection lost")
