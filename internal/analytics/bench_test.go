package analytics

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/store/sqlite"
)

type nopSink struct{}

func (nopSink) RaiseAsync(string, string, string, json.RawMessage, time.Time) bool { return true }
func (nopSink) ClearAsync(string, string, time.Time) bool                          { return true }

// BenchmarkEvaluate is the analytics' evaluation rate on one core: one op
// is one message of one of 300 things through Engine.Evaluate with one
// rule of the kind (membership cached, state looked up, detector run,
// raises and clears handed on). Reported as evals/s.
func BenchmarkEvaluate(b *testing.B) {
	fence := square(10, 50, 11, 51)
	for _, c := range []struct{ kind, config string }{
		{KindThreshold, `{"key":"temperature","above":80,"for":"1m","clearBelow":75}`},
		{KindGeofence, `{"fence":` + fence + `}`},
		{KindSpeed, `{"limitKmh":100}`},
		{KindAnomaly, `{"key":"temperature"}`},
		{KindSilence, `{"expectedInterval":"1m"}`},
	} {
		b.Run(c.kind, func(b *testing.B) {
			st, err := sqlite.Open(filepath.Join(b.TempDir(), "mote.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			const things = 300
			for i := range things {
				if _, err := st.Things().Create(b.Context(), store.Thing{Name: fmt.Sprint("t", i)}); err != nil {
					b.Fatal(err)
				}
			}
			e := New(Options{Store: st.Analytics(), Things: st.Things(), Alarms: nopSink{}, MembershipTTL: time.Hour})
			cc, err := compile(store.AnalyticsRule{Name: "r", Kind: c.kind, Config: json.RawMessage(c.config), Enabled: true})
			if err != nil {
				b.Fatal(err)
			}
			rules := []*compiled{cc}
			e.rules.Store(&rules)
			names := make([]string, things)
			for i := range names {
				names[i] = fmt.Sprint("t", i)
				e.Evaluate(names[i], t0, Values{"temperature": 20}) // warm the caches
			}
			vals := make([]Values, 64)
			for i := range vals {
				vals[i] = Values{"temperature": 70 + float64(i%20), "lat": 50.5 + float64(i%7)*0.2, "lon": 10.5}
			}
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				e.Evaluate(names[i%things], t0.Add(time.Duration(i)*time.Second), vals[i%len(vals)])
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "evals/s")
		})
	}
}
