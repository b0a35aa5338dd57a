package analytics

import "testing"

// flagsOf runs the anomaly detector of config over a stream.
func flagsOf(t testing.TB, config string, s Stream) []bool {
	d, _, err := Parse(KindAnomaly, []byte(config))
	if err != nil {
		t.Fatal(err)
	}
	a := d.(*anomaly)
	st := a.NewState().(*anomalyState)
	flags := make([]bool, len(s.Values))
	for i, x := range s.Values {
		flags[i], _ = a.Score(st, x)
	}
	return flags
}

// TestAnomalyPrecisionRecall measures the detector (defaults, and
// stuckCount 10 for stuck sensors) on synthetic streams, 5 seeds each;
// the figures are in docs/alarms.md. Spikes and level shifts must reach
// 0.9 in both.
func TestAnomalyPrecisionRecall(t *testing.T) {
	for _, c := range []struct {
		kind, config string
		min          float64
	}{
		{AnomalySpike, `{"key":"v"}`, 0.9},
		{AnomalyLevelShift, `{"key":"v"}`, 0.9},
		{AnomalyDrift, `{"key":"v"}`, 0},
		{AnomalyStuck, `{"key":"v","stuckCount":10}`, 0},
	} {
		var p, r float64
		const seeds = 5
		for seed := range uint64(seeds) {
			s := Synthesize(SynthOptions{Seed: seed + 1, Kind: c.kind})
			pp, rr := s.Score(flagsOf(t, c.config, s))
			p += pp / seeds
			r += rr / seeds
		}
		t.Logf("%-12s precision %.3f recall %.3f", c.kind, p, r)
		if p < c.min || r < c.min {
			t.Errorf("%s: precision %.3f recall %.3f; want both ≥ %.1f", c.kind, p, r, c.min)
		}
	}
}

func TestSynthesizeLabels(t *testing.T) {
	s := Synthesize(SynthOptions{Seed: 1, Kind: AnomalySpike, Events: 3, Gap: 10})
	if len(s.Values) != 43 || len(s.Labels) != 3 || s.Labels[0].Start != 10 || s.Labels[2].Start != 32 {
		t.Fatalf("stream of %d values, labels %+v", len(s.Values), s.Labels)
	}
	// A perfect detector scores 1 and 1; flagging everything has poor precision.
	perfect := make([]bool, len(s.Values))
	all := make([]bool, len(s.Values))
	for i := range all {
		all[i] = true
	}
	for _, l := range s.Labels {
		perfect[l.Start] = true
	}
	if p, r := s.Score(perfect); p != 1 || r != 1 {
		t.Errorf("perfect: %v %v", p, r)
	}
	if p, r := s.Score(all); p > 0.1 || r != 1 {
		t.Errorf("all: %v %v", p, r)
	}
}
