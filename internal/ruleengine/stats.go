package ruleengine

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Counters returns how many messages the rule matched and how many
// evaluation or action failures it had since the server started (the
// values of mote_rule_matched_total and mote_rule_errors_total).
func (e *Engine) Counters(rule string) (matched, errors uint64) {
	return counterValue(e.m.matched, rule), counterValue(e.m.errors, rule)
}

func counterValue(v *prometheus.CounterVec, rule string) uint64 {
	c, err := v.GetMetricWithLabelValues(rule)
	if err != nil {
		return 0
	}
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return 0
	}
	return uint64(m.GetCounter().GetValue())
}
