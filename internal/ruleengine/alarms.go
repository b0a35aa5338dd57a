package ruleengine

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/moteiot/mote/internal/core"
)

// AlarmSink takes the raiseAlarm and clearAlarm actions without waiting;
// *alarms.Service satisfies it. A false return means the request was
// dropped (its queue was full).
type AlarmSink interface {
	RaiseAsync(thing, typ, severity string, details json.RawMessage, at time.Time) bool
	ClearAsync(thing, typ string, at time.Time) bool
}

// Limits of the alarm actions, as in package alarms (which this package
// does not import).
const maxAlarmDetails = 16 * 1024

var alarmSeverities = []string{"critical", "major", "minor", "warning"}

// checkAlarmAction checks a raiseAlarm or clearAlarm action.
func checkAlarmAction(a Action) error {
	if err := core.ValidateName("alarmType", a.AlarmType); err != nil {
		return err
	}
	if a.Type == ActionClearAlarm {
		if a.Severity != "" || a.Details != nil {
			return core.Invalid("severity", "severity and details are only for a raiseAlarm action")
		}
		return nil
	}
	ok := false
	for _, s := range alarmSeverities {
		ok = ok || a.Severity == s
	}
	if !ok {
		return core.Invalid("severity", "severity must be one of %s", strings.Join(alarmSeverities, ", "))
	}
	if a.Details != nil {
		if len(a.Details) > maxAlarmDetails {
			return core.Invalid("details", "details are larger than %d bytes", maxAlarmDetails)
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(a.Details, &obj); err != nil || obj == nil {
			return core.Invalid("details", "details must be a JSON object")
		}
	}
	return nil
}

// runAlarm raises or clears an alarm of the thing that published msg —
// never of a thing named in the payload, so a device cannot raise alarms
// for another. A raise without details takes the rule's output when it is
// a JSON object small enough.
func (e *Engine) runAlarm(a *compiledAction, msg core.Message, body []byte) error {
	if e.opts.Alarms == nil {
		return fmt.Errorf("%s: no alarm service", a.Type)
	}
	if msg.Thing == "" {
		return errors.New(a.Type + ": the message was not published by a thing")
	}
	at := msg.Received
	if a.Type == ActionClearAlarm {
		if !e.opts.Alarms.ClearAsync(msg.Thing, a.AlarmType, at) {
			return fmt.Errorf("clearAlarm %s: the alarm queue is full", a.AlarmType)
		}
		return nil
	}
	details := a.Details
	if details == nil && len(body) > 0 && len(body) <= maxAlarmDetails && body[0] == '{' && json.Valid(body) {
		details = json.RawMessage(body)
	}
	if !e.opts.Alarms.RaiseAsync(msg.Thing, a.AlarmType, a.Severity, details, at) {
		return fmt.Errorf("raiseAlarm %s: the alarm queue is full", a.AlarmType)
	}
	return nil
}
