package ruleengine

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/store"
)

// Secrets of rules: the header values of webhook actions and the password
// in a webhook URL (https://user:password@host/...). They are stored as
// given (Mote has no key to encrypt them with yet); they are never logged
// or put in an error (errors name the URL without its password), and the
// API shows them only to admins (Redact). An update that sends back the
// placeholder keeps the stored value (Update), so a client may GET a
// redacted rule, change it and PUT it.

// Redacted is what a secret is replaced with.
const Redacted = "***"

// redactedURL returns raw with the password of its user information
// replaced by Redacted (raw itself when it has none or does not parse).
func redactedURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, ok := u.User.Password(); !ok {
		return raw
	}
	// url.UserPassword would escape the placeholder (%2A%2A%2A).
	u.User = url.User(u.User.Username()) // its '@' is escaped
	out := u.String()
	i := strings.IndexByte(out, '@')
	return out[:i] + ":" + Redacted + out[i:]
}

// redactAction replaces the secrets of one webhook action.
func redactAction(a *Action) {
	if a.Type != ActionWebhook {
		return
	}
	a.URL = redactedURL(a.URL)
	if len(a.Headers) > 0 {
		h := make(map[string]string, len(a.Headers))
		for k := range a.Headers {
			h[k] = Redacted
		}
		a.Headers = h
	}
}

// Redact returns r with the secrets of its webhook actions (header values,
// the URL's password) replaced by Redacted.
func Redact(r store.Rule) store.Rule {
	var list []Action
	if len(r.Actions) > 0 && json.Unmarshal(r.Actions, &list) == nil {
		for i := range list {
			redactAction(&list[i])
		}
		r.Actions, _ = json.Marshal(list)
	}
	if len(r.ErrorAction) > 0 && string(r.ErrorAction) != "null" {
		var a Action
		if json.Unmarshal(r.ErrorAction, &a) == nil {
			redactAction(&a)
			r.ErrorAction, _ = json.Marshal(a)
		}
	}
	return r
}

// keepSecrets replaces the placeholders in r's webhook actions with the
// stored values of old (nil: there is none, as for a new rule). A webhook
// action's stored counterpart is the stored webhook action with the same
// redacted URL; a placeholder without one is a KindInvalid error naming
// the field.
func keepSecrets(r store.Rule, old *store.Rule) (store.Rule, error) {
	stored := map[string]Action{} // redacted URL → first stored webhook action
	if old != nil {
		var list []Action
		_ = json.Unmarshal(old.Actions, &list)
		var ea Action
		if len(old.ErrorAction) > 0 && json.Unmarshal(old.ErrorAction, &ea) == nil {
			list = append(list, ea)
		}
		for _, a := range list {
			if a.Type != ActionWebhook {
				continue
			}
			if _, ok := stored[redactedURL(a.URL)]; !ok {
				stored[redactedURL(a.URL)] = a
			}
		}
	}
	restore := func(field string, a *Action) error {
		if a.Type != ActionWebhook {
			return nil
		}
		prev, ok := stored[redactedURL(a.URL)]
		if u, err := url.Parse(a.URL); err == nil && u.User != nil {
			if p, set := u.User.Password(); set && p == Redacted {
				if !ok {
					return core.Invalid(field+".url", "%s.url: the password %q keeps a stored one, but no stored webhook has this URL; give the password", field, Redacted)
				}
				a.URL = prev.URL
			}
		}
		for k, v := range a.Headers {
			if v != Redacted {
				continue
			}
			pv, has := prev.Headers[k]
			if !ok || !has {
				return core.Invalid(field+".headers", "%s.headers: %s is %q, which keeps a stored value, but no stored webhook with this URL has that header; give the value", field, k, Redacted)
			}
			a.Headers[k] = pv
		}
		return nil
	}
	if len(r.Actions) > 0 && string(r.Actions) != "null" {
		var raws []json.RawMessage
		if err := json.Unmarshal(r.Actions, &raws); err != nil {
			return r, nil // parseActions reports it
		}
		changed := false
		for i, raw := range raws {
			var a Action
			if decodeStrict(raw, &a) != nil {
				return r, nil
			}
			before := fmt.Sprint(a)
			if err := restore(fmt.Sprintf("actions[%d]", i), &a); err != nil {
				return r, err
			}
			if fmt.Sprint(a) != before {
				raws[i], _ = json.Marshal(a)
				changed = true
			}
		}
		if changed {
			r.Actions, _ = json.Marshal(raws)
		}
	}
	if len(r.ErrorAction) > 0 && string(r.ErrorAction) != "null" {
		var a Action
		if decodeStrict(r.ErrorAction, &a) != nil {
			return r, nil
		}
		before := fmt.Sprint(a)
		if err := restore("errorAction", &a); err != nil {
			return r, err
		}
		if fmt.Sprint(a) != before {
			r.ErrorAction, _ = json.Marshal(a)
		}
	}
	return r, nil
}
