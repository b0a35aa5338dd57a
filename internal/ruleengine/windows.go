package ruleengine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/rules"
	"github.com/moteiot/mote/internal/store"
)

// Windowed rules (GROUP BY ..., TUMBLING(L) | SLIDING(L, hop); the SQL is
// in package rules). The workers add each message a windowed rule matches
// to its group's window (rules.Windows, one accumulator per aggregate per
// hop, under the rule's mutex); they never emit on the publisher's
// goroutine. One goroutine, windowLoop, wakes at the next hop boundary of
// any windowed rule (plus WindowGrace, for messages still in the queue),
// closes the windows that ended and runs the rule's actions on each
// emitted row as if it were the rule's output for a message: the message
// the actions see is the group's last message (topic, thing, client ID)
// received at the window's end.
//
// Bounds: the open groups of all windowed rules are limited to
// WindowMaxGroups (a message that would open one more is refused and
// counted in mote_rule_window_refused_total; the limit may be overshot by
// at most one group per worker); a message whose window was already
// emitted is counted in mote_rule_window_late_total.

// ruleWindows is the window state of one running windowed rule.
type ruleWindows struct {
	hop time.Duration
	mu  sync.Mutex
	ws  *rules.Windows
}

type windowMetrics struct {
	groups   prometheus.Gauge
	refused  *prometheus.CounterVec
	late     *prometheus.CounterVec
	skipped  *prometheus.CounterVec
	emitted  *prometheus.CounterVec
	restored prometheus.Counter

	saveErrors prometheus.Counter
}

func newWindowMetrics() windowMetrics {
	return windowMetrics{
		groups: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mote_rule_window_groups",
			Help: "Open (windowed rule, group) windows."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mote_rule_window_refused_total",
			Help: "Messages of a windowed rule refused because they would open a group beyond --rule-window-max-groups."}, []string{"rule"}),
		late: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mote_rule_window_late_total",
			Help: "Messages of a windowed rule that arrived after their window was emitted."}, []string{"rule"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mote_rule_window_skipped_total",
			Help: "Values an aggregate of a windowed rule skipped because they were not numbers."}, []string{"rule"}),
		emitted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mote_rule_window_emitted_total",
			Help: "Windows a windowed rule emitted (after HAVING)."}, []string{"rule"}),
		restored: prometheus.NewCounter(prometheus.CounterOpts{Name: "mote_rule_window_restored_groups_total",
			Help: "Window groups restored from the store at start."}),
		saveErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "mote_rule_window_save_errors_total",
			Help: "Failed saves of a windowed rule's open windows to the store."}),
	}
}

func (m windowMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.groups, m.refused, m.late, m.skipped, m.emitted, m.restored, m.saveErrors}
}

func (m windowMetrics) forget(rule string) {
	m.refused.DeleteLabelValues(rule)
	m.late.DeleteLabelValues(rule)
	m.skipped.DeleteLabelValues(rule)
	m.emitted.DeleteLabelValues(rule)
}

// addToWindow adds a message to its group's window of windowed rule r. It
// runs on a worker.
func (e *Engine) addToWindow(r *compiledRule, m *rules.Message, msg core.Message) {
	at := msg.Received
	if at.IsZero() {
		at = time.Now()
	}
	w := r.win
	w.mu.Lock()
	before := w.ws.Len()
	w.ws.SetFull(e.winGroups.Load() >= int64(e.opts.WindowMaxGroups))
	rows, skipped, err := w.ws.Add(m, at)
	e.winGroups.Add(int64(w.ws.Len() - before))
	w.mu.Unlock()
	e.wm.groups.Set(float64(e.winGroups.Load()))
	if skipped > 0 {
		e.wm.skipped.WithLabelValues(r.rule.Name).Add(float64(skipped))
	}
	switch {
	case errors.Is(err, rules.ErrWindowGroups):
		e.wm.refused.WithLabelValues(r.rule.Name).Inc()
		e.windowLog.log(e.log, r.rule.Name, "window group limit reached (--rule-window-max-groups): message refused")
		return
	case errors.Is(err, rules.ErrWindowLate):
		e.wm.late.WithLabelValues(r.rule.Name).Inc()
		e.windowLog.log(e.log, r.rule.Name, "message arrived after its window was emitted: not counted")
		return
	case err != nil:
		e.m.errors.WithLabelValues(r.rule.Name).Inc()
		r.stats.errors.Add(1)
		e.onError(r, msg, nil, err)
		return
	}
	e.m.matched.WithLabelValues(r.rule.Name).Inc()
	r.stats.matched.Add(1)
	e.emitRows(r, rows)
}

// emitRows runs the actions of windowed rule r on rows.
func (e *Engine) emitRows(r *compiledRule, rows []rules.WindowRow) {
	for _, row := range rows {
		msg := core.Message{Topic: row.Input.Topic, Thing: row.Input.Thing, ClientID: row.Input.ClientID, Received: row.End}
		if row.Err != nil {
			e.m.errors.WithLabelValues(r.rule.Name).Inc()
			r.stats.errors.Add(1)
			e.onError(r, msg, nil, row.Err)
			continue
		}
		e.wm.emitted.WithLabelValues(r.rule.Name).Inc()
		e.runActions(r, msg, row.Output)
	}
}

// windowLoop closes the windows of the windowed rules at their hop
// boundaries, until the engine closes.
func (e *Engine) windowLoop() {
	defer e.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	lastSave := time.Now()
	for {
		now := time.Now()
		next := now.Add(time.Second) // rules may change: look again at least every second
		for _, r := range *e.rules.Load() {
			if r.win == nil {
				continue
			}
			// The next hop boundary (aligned to the Unix epoch, as the
			// windows are) after now - grace, plus the grace.
			hop, grace := r.win.hop.Milliseconds(), e.opts.WindowGrace
			ms := now.Add(-grace).UnixMilli()
			boundary := ms - ms%hop + hop
			if ms < 0 && ms%hop != 0 {
				boundary -= hop
			}
			due := time.UnixMilli(boundary).Add(grace)
			if due.Before(next) {
				next = due
			}
		}
		t.Reset(time.Until(next))
		select {
		case <-e.done:
			return
		case <-e.windowWake:
			if !t.Stop() {
				<-t.C
			}
		case <-t.C:
		}
		e.closeWindows(time.Now().Add(-e.opts.WindowGrace))
		if time.Since(lastSave) >= e.opts.WindowSaveInterval {
			e.saveWindows(e.ctx)
			lastSave = time.Now()
		}
	}
}

// closeWindows emits the windows of every windowed rule that ended by upTo.
func (e *Engine) closeWindows(upTo time.Time) {
	for _, r := range *e.rules.Load() {
		if r.win == nil {
			continue
		}
		r.win.mu.Lock()
		before := r.win.ws.Len()
		rows := r.win.ws.Close(upTo)
		e.winGroups.Add(int64(r.win.ws.Len() - before))
		r.win.mu.Unlock()
		if r.rule.Enabled {
			e.emitRows(r, rows)
		}
	}
	e.wm.groups.Set(float64(e.winGroups.Load()))
}

// windowLogger rate-limits the warnings of windowed rules: one per second.
type windowLogger struct {
	mu   sync.Mutex
	last time.Time
	n    int
}

func (d *windowLogger) log(l *slog.Logger, rule, msg string) {
	d.mu.Lock()
	now := time.Now()
	if now.Sub(d.last) < time.Second {
		d.n++
		d.mu.Unlock()
		return
	}
	n := d.n
	d.last, d.n = now, 0
	d.mu.Unlock()
	l.Warn(msg, "rule", rule, "suppressed_before", n)
}

// dropWindows forgets the windows of a rule leaving the running set.
func (e *Engine) dropWindows(r *compiledRule) {
	if r.win == nil {
		return
	}
	r.win.mu.Lock()
	e.winGroups.Add(-int64(r.win.ws.Len()))
	r.win.ws = r.win.ws.Statement().NewWindows(0)
	r.win.mu.Unlock()
}

// testWindowed tries a windowed statement on the test messages, in the
// order given, and closes every window.
func testWindowed(stmt *rules.Statement, in TestInput) (TestResult, error) {
	msgs := in.Messages
	if len(msgs) == 0 {
		msgs = []TestMessage{{Topic: in.Topic, Payload: in.Payload, ClientID: in.ClientID, Thing: in.Thing, At: time.Now()}}
	}
	if len(msgs) > MaxTestMessages {
		return TestResult{}, core.Invalid("messages", "%d messages; the limit is %d", len(msgs), MaxTestMessages)
	}
	ws := stmt.NewWindows(MaxTestMessages)
	var res TestResult
	var rows []rules.WindowRow
	last := time.Time{}
	for i, tm := range msgs {
		field := fmt.Sprintf("messages[%d]", i)
		if len(in.Messages) == 0 {
			field = "topic"
		}
		if tm.Topic == "" {
			return TestResult{}, core.Invalid(field, "%s: topic is required", field)
		}
		if tm.At.IsZero() {
			return TestResult{}, core.Invalid(field, "%s: at (the receive time) is required", field)
		}
		if !stmt.Matches(tm.Topic) {
			continue
		}
		thing := tm.Thing
		if rest, ok := strings.CutPrefix(tm.Topic, core.ThingsPrefix); ok && thing == "" {
			thing, _, _ = strings.Cut(rest, "/") // as the device of things/{thing}/... would be
		}
		m := rules.NewMessage(rules.Input{Topic: tm.Topic, Payload: tm.Payload, ClientID: tm.ClientID, Thing: thing,
			Received: tm.At, Properties: in.Properties})
		out, skipped, err := ws.Add(m, tm.At)
		res.Skipped += skipped
		switch {
		case errors.Is(err, rules.ErrWindowLate):
			res.Late++
		case err != nil:
			return TestResult{}, core.Invalid(field, "%s: evaluation failed %v", field, err)
		}
		rows = append(rows, out...)
		if tm.At.After(last) {
			last = tm.At
		}
	}
	w, _ := stmt.Window()
	rows = append(rows, ws.Close(last.Add(2*w.Length))...)
	sort.SliceStable(rows, func(i, j int) bool {
		if !rows[i].End.Equal(rows[j].End) {
			return rows[i].End.Before(rows[j].End)
		}
		return rows[i].Group < rows[j].Group
	})
	for _, r := range rows {
		if r.Err != nil {
			return TestResult{}, core.Invalid("payload", "evaluation failed %v", r.Err)
		}
		res.Windows = append(res.Windows, TestWindow{Group: r.Group, Start: r.Start.UTC(), End: r.End.UTC(),
			Output: r.Output.AppendJSON(nil)})
	}
	res.Matched = len(res.Windows) > 0
	return res, nil
}

// saveWindows saves the open windows of every windowed rule in the store,
// each with a deadline. Failures are logged: the previous save stays.
func (e *Engine) saveWindows(ctx context.Context) {
	if e.opts.WindowStore == nil {
		return
	}
	for _, r := range *e.rules.Load() {
		if r.win == nil {
			continue
		}
		r.win.mu.Lock()
		data, err := r.win.ws.Save()
		r.win.mu.Unlock()
		if err == nil {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			err = e.opts.WindowStore.Put(sctx, store.RuleWindowState{Rule: r.rule.Name, SQL: r.rule.SQL, State: data})
			cancel()
		}
		if err != nil {
			e.wm.saveErrors.Inc()
			e.windowLog.log(e.log, r.rule.Name, "open windows not saved: "+err.Error())
		}
	}
}

// restoreWindows restores the saved windows of the windowed rules at
// start. A state saved for another SQL, or that does not decode, is
// dropped (and logged).
func (e *Engine) restoreWindows(ctx context.Context) {
	if e.opts.WindowStore == nil {
		return
	}
	saved, err := e.opts.WindowStore.List(ctx)
	if err != nil {
		e.log.Error("saved rule windows not read; windowed rules start afresh", "error", err)
		return
	}
	byRule := map[string]store.RuleWindowState{}
	for _, s := range saved {
		byRule[s.Rule] = s
	}
	for _, r := range *e.rules.Load() {
		s, ok := byRule[r.rule.Name]
		if r.win == nil || !ok || len(s.State) == 0 {
			continue
		}
		if s.SQL != r.rule.SQL {
			e.log.Info("saved windows are of an earlier version of the rule; it starts afresh", "rule", r.rule.Name)
			continue
		}
		room := e.opts.WindowMaxGroups - int(e.winGroups.Load())
		if room <= 0 {
			e.log.Warn("saved windows not restored: --rule-window-max-groups reached", "rule", r.rule.Name)
			continue
		}
		r.win.mu.Lock()
		n, err := r.win.ws.Restore(s.State, room)
		r.win.mu.Unlock()
		if err != nil {
			e.log.Error("saved windows not restored; the rule starts afresh", "rule", r.rule.Name, "error", err)
			continue
		}
		e.winGroups.Add(int64(n))
		e.wm.restored.Add(float64(n))
		e.log.Info("open windows restored", "rule", r.rule.Name, "groups", n, "saved_at", s.SavedAt)
	}
	e.wm.groups.Set(float64(e.winGroups.Load()))
}
