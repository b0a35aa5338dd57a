package analytics

import (
	"math/rand/v2"
)

// Synthetic streams with labelled anomalies, to measure the anomaly
// detector (TestAnomalyPrecisionRecall, docs/alarms.md) and to drive
// simulations.

// Anomaly kinds of a synthetic stream.
const (
	AnomalySpike      = "spike"       // one value far off
	AnomalyLevelShift = "level-shift" // the level jumps and stays
	AnomalyDrift      = "drift"       // the level creeps away
	AnomalyStuck      = "stuck"       // the sensor repeats one value
)

// Labelled is one anomaly in a synthetic stream: values [Start, End) are
// anomalous; a detector should flag one of [Start, Start+Tolerance].
type Labelled struct {
	Kind       string
	Start, End int
	Tolerance  int
}

// Stream is a synthetic series with its labels.
type Stream struct {
	Values []float64
	Labels []Labelled
}

// SynthOptions shape a synthetic stream.
type SynthOptions struct {
	Seed     uint64
	Kind     string  // one of the Anomaly kinds
	Events   int     // anomalies in the stream (default 20)
	Gap      int     // normal values between them (default 300)
	Level    float64 // base level (default 20)
	Noise    float64 // σ of the Gaussian noise (default 1)
	Strength float64 // size in σ: spike height, shift, drift total (default 8)
}

// Synthesize makes a stream of normal values around a level with
// Gaussian noise and Events anomalies of one kind, each after Gap normal
// values.
func Synthesize(o SynthOptions) Stream {
	if o.Events <= 0 {
		o.Events = 20
	}
	if o.Gap <= 0 {
		o.Gap = 300
	}
	if o.Level == 0 {
		o.Level = 20
	}
	if o.Noise <= 0 {
		o.Noise = 1
	}
	if o.Strength <= 0 {
		o.Strength = 8
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x6d6f7465))
	level := o.Level
	var s Stream
	normal := func(n int) {
		for range n {
			s.Values = append(s.Values, level+rng.NormFloat64()*o.Noise)
		}
	}
	sign := func() float64 {
		if rng.IntN(2) == 0 {
			return -1
		}
		return 1
	}
	for range o.Events {
		normal(o.Gap)
		start := len(s.Values)
		switch o.Kind {
		case AnomalySpike:
			h := o.Strength * (1 + rng.Float64()) * o.Noise
			s.Values = append(s.Values, level+sign()*h)
			s.Labels = append(s.Labels, Labelled{Kind: o.Kind, Start: start, End: start + 1})
		case AnomalyLevelShift:
			level += sign() * o.Strength * o.Noise
			// Flagged values until the detector has learnt the new
			// level count as right: the label covers 100 values.
			normal(100)
			s.Labels = append(s.Labels, Labelled{Kind: o.Kind, Start: start, End: start + 100, Tolerance: 5})
		case AnomalyDrift:
			d := sign() * o.Strength * o.Noise / 200
			for range 200 {
				level += d
				s.Values = append(s.Values, level+rng.NormFloat64()*o.Noise)
			}
			s.Labels = append(s.Labels, Labelled{Kind: o.Kind, Start: start, End: start + 200, Tolerance: 200})
		case AnomalyStuck:
			v := s.Values[len(s.Values)-1]
			for range 50 {
				s.Values = append(s.Values, v)
			}
			s.Labels = append(s.Labels, Labelled{Kind: o.Kind, Start: start, End: start + 50, Tolerance: 50})
		}
	}
	normal(o.Gap)
	return s
}

// Score measures flags (one per value: flagged anomalous) against the
// labels: recall is the share of labelled anomalies flagged within their
// tolerance; precision the share of flagged values inside a label.
func (s Stream) Score(flags []bool) (precision, recall float64) {
	in := make([]bool, len(s.Values))
	for _, l := range s.Labels {
		for i := l.Start; i < l.End && i < len(in); i++ {
			in[i] = true
		}
	}
	var flagged, right int
	for i, f := range flags {
		if f {
			flagged++
			if in[i] {
				right++
			}
		}
	}
	found := 0
	for _, l := range s.Labels {
		for i := l.Start; i <= l.Start+l.Tolerance && i < len(flags); i++ {
			if flags[i] {
				found++
				break
			}
		}
	}
	precision, recall = 1, 1
	if flagged > 0 {
		precision = float64(right) / float64(flagged)
	}
	if len(s.Labels) > 0 {
		recall = float64(found) / float64(len(s.Labels))
	}
	return precision, recall
}
