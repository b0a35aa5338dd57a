package analytics

import (
	"math"
	"time"
)

// anomaly is an online detector per thing and key: an exponentially
// weighted mean and variance (EWMA), a z-score for each value, and a
// stuck-sensor check.
//
//   - After warmup values, a value whose |z| exceeds sensitivity is
//     anomalous. The statistics then learn from the value clipped to
//     mean ± sensitivity·σ, so a spike does not inflate them, while a
//     lasting level shift is learnt over about 1/alpha values (and
//     flagged until it is).
//   - stuckCount identical values in a row (a frozen sensor) are
//     anomalous too (0 turns the check off).
//
// The alarm is raised on the first anomalous value and cleared after
// clearAfter normal values in a row.
type anomaly struct {
	common
	Key         string  `json:"key"`
	Alpha       float64 `json:"alpha"`
	Sensitivity float64 `json:"sensitivity"`
	Warmup      int     `json:"warmup"`
	StuckCount  int     `json:"stuckCount"`
	ClearAfter  int     `json:"clearAfter"`
}

type anomalyState struct {
	N      int     `json:"n"`
	Mean   float64 `json:"mean"`
	Var    float64 `json:"var"`
	Last   float64 `json:"last"`
	Same   int     `json:"same"`   // values equal to Last in a row
	Normal int     `json:"normal"` // normal values in a row since the last anomaly
	Raised bool    `json:"raised"`
}

func parseAnomaly(config []byte) (Detector, error) {
	a := anomaly{Alpha: 0.05, Sensitivity: 4, Warmup: 30, StuckCount: 0, ClearAfter: 10}
	if err := parseStrict(config, &a); err != nil {
		return nil, err
	}
	if err := checkKey("config.key", a.Key); err != nil {
		return nil, err
	}
	switch {
	case !(a.Alpha > 0 && a.Alpha < 1):
		return nil, invalid("config.alpha", "alpha must be between 0 and 1")
	case !(a.Sensitivity >= 1 && a.Sensitivity <= 100):
		return nil, invalid("config.sensitivity", "sensitivity (a z-score) must be from 1 to 100")
	case a.Warmup < 2 || a.Warmup > 100_000:
		return nil, invalid("config.warmup", "warmup must be from 2 to 100000 values")
	case a.StuckCount != 0 && (a.StuckCount < 2 || a.StuckCount > 100_000):
		return nil, invalid("config.stuckCount", "stuckCount must be 0 (off) or from 2 to 100000")
	case a.ClearAfter < 1 || a.ClearAfter > 100_000:
		return nil, invalid("config.clearAfter", "clearAfter must be from 1 to 100000")
	}
	return &a, nil
}

func (a *anomaly) NewState() State { return &anomalyState{} }

// Score observes x and reports whether it is anomalous and its z-score.
func (a *anomaly) Score(st *anomalyState, x float64) (bool, float64) {
	if !finite(x) {
		return false, 0
	}
	if st.N > 0 && x == st.Last {
		st.Same++
	} else {
		st.Same = 1
	}
	st.Last = x
	if st.N == 0 {
		st.N, st.Mean, st.Var = 1, x, 0
		return false, 0
	}
	sd := math.Sqrt(st.Var)
	var z float64
	if sd > 0 {
		z = (x - st.Mean) / sd
	}
	anomalous := st.N >= a.Warmup && sd > 0 && math.Abs(z) > a.Sensitivity
	if a.StuckCount > 0 && st.Same >= a.StuckCount {
		anomalous = true
	}
	// Learn, from a clipped value once warmed up.
	learn := x
	if st.N >= a.Warmup && sd > 0 {
		learn = math.Max(st.Mean-a.Sensitivity*sd, math.Min(st.Mean+a.Sensitivity*sd, x))
	}
	alpha := a.Alpha
	if st.N < a.Warmup { // warm-up: a plain running mean and variance
		alpha = 1 / float64(st.N+1)
	}
	d := learn - st.Mean
	st.Mean += alpha * d
	st.Var = (1 - alpha) * (st.Var + alpha*d*d)
	st.N++
	return anomalous, z
}

func (a *anomaly) Telemetry(s State, _ time.Time, v Values) Outcome {
	st := s.(*anomalyState)
	x, ok := v[a.Key]
	if !ok {
		return Outcome{}
	}
	bad, z := a.Score(st, x)
	if bad {
		st.Normal = 0
		if !st.Raised {
			st.Raised = true
			return Outcome{Raise: true, Details: map[string]any{"key": a.Key, "value": x, "z": math.Round(z*100) / 100,
				"mean": st.Mean, "stuck": a.StuckCount > 0 && st.Same >= a.StuckCount}}
		}
		return Outcome{}
	}
	st.Normal++
	if st.Raised && st.Normal >= a.ClearAfter {
		st.Raised = false
		return Outcome{Clear: true}
	}
	return Outcome{}
}

func (a *anomaly) Presence(State, bool, time.Time) Outcome { return Outcome{} }
func (a *anomaly) Tick(State, time.Time) Outcome           { return Outcome{} }
