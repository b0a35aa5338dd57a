package ruleengine

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/seal"
	"github.com/moteiot/mote/internal/store"
)

// Secrets of rules: the header values of webhook actions, the password
// in the URL of a webhook, nats, postgres or mqtt action
// (https://user:password@host/...), a kafka action's SASL password, a
// nats action's creds and the TLS private key of any action. They are sealed
// (internal/seal, AES-256-GCM under the data directory's seal.key) before
// a rule reaches the store, and opened when a rule is loaded to run and
// when the API reads it (sealRule, openRule, openActions); values stored
// in plain text before sealing existed are sealed at Start. They are never
// logged or put in an error (errors name the URL without its password),
// and the API shows them only to admins (Redact). An update that sends back the
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

// otherSecrets returns the secrets of an action besides the URL's
// password and header values: the kafka SASL password, the nats creds
// and the TLS private key, by field name.
func otherSecrets(a *Action) map[string]*string {
	out := map[string]*string{}
	if a.SASL != nil && a.SASL.Password != "" {
		out["sasl.password"] = &a.SASL.Password
	}
	if a.Creds != "" {
		out["creds"] = &a.Creds
	}
	if a.TLS != nil && a.TLS.Key != "" {
		out["tls.key"] = &a.TLS.Key
	}
	return out
}

// secretKey names the stored counterpart of an action whose secrets are
// given as the placeholder: the stored action of the same type with the
// same redacted URL and brokers.
func secretKey(a *Action) string {
	return a.Type + "|" + redactedURL(a.URL) + "|" + strings.Join(a.Brokers, ",")
}

// redactAction replaces the secrets of one action.
func redactAction(a *Action) {
	if !external(a.Type) {
		return
	}
	for _, p := range otherSecrets(a) {
		*p = Redacted
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

// Redact returns r with the secrets of its actions (webhook header values,
// a URL's password, a SASL password, NATS creds, a TLS key) replaced by
// Redacted.
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
	stored := map[string]Action{} // secretKey → first stored action
	if old != nil {
		var list []Action
		_ = json.Unmarshal(old.Actions, &list)
		var ea Action
		if len(old.ErrorAction) > 0 && json.Unmarshal(old.ErrorAction, &ea) == nil {
			list = append(list, ea)
		}
		for _, a := range list {
			if !external(a.Type) {
				continue
			}
			if _, ok := stored[secretKey(&a)]; !ok {
				stored[secretKey(&a)] = a
			}
		}
	}
	restore := func(field string, a *Action) error {
		if !external(a.Type) {
			return nil
		}
		prev, ok := stored[secretKey(a)]
		prevOther := otherSecrets(&prev)
		for name, p := range otherSecrets(a) {
			if *p != Redacted {
				continue
			}
			pv, has := prevOther[name]
			if !ok || !has {
				return core.Invalid(field+"."+name, "%s.%s is %q, which keeps a stored value, but no stored %s action with this URL has one; give the value", field, name, Redacted, a.Type)
			}
			*p = *pv
		}
		if u, err := url.Parse(a.URL); err == nil && u.User != nil {
			if p, set := u.User.Password(); set && p == Redacted {
				if !ok {
					return core.Invalid(field+".url", "%s.url: the password %q keeps a stored one, but no stored %s action has this URL; give the password", field, Redacted, a.Type)
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
			before, _ := json.Marshal(a)
			if err := restore(fmt.Sprintf("actions[%d]", i), &a); err != nil {
				return r, err
			}
			if after, _ := json.Marshal(a); string(after) != string(before) {
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
		before, _ := json.Marshal(a)
		if err := restore("errorAction", &a); err != nil {
			return r, err
		}
		if after, _ := json.Marshal(a); string(after) != string(before) {
			r.ErrorAction, _ = json.Marshal(a)
		}
	}
	return r, nil
}

// mapSecrets returns r with f applied to every secret of its webhook
// actions (header values, the URL's password) and whether any changed.
// Actions that do not decode are left as they are (they do not compile).
func mapSecrets(r store.Rule, f func(string) (string, error)) (store.Rule, bool, error) {
	changed := false
	do := func(a *Action) error {
		if !external(a.Type) {
			return nil
		}
		for name, p := range otherSecrets(a) {
			np, err := f(*p)
			if err != nil {
				return fmt.Errorf("%s %s: %s: %w", a.Type, redactedURL(a.URL), name, err)
			}
			changed = changed || np != *p
			*p = np
		}
		if u, err := url.Parse(a.URL); err == nil && u.User != nil {
			if p, ok := u.User.Password(); ok {
				np, err := f(p)
				if err != nil {
					return fmt.Errorf("%s %s: url password: %w", a.Type, redactedURL(a.URL), err)
				}
				if np != p {
					if seal.IsSealed(np) {
						// Unescaped, so the stored URL shows the prefix
						// (its characters are all allowed in userinfo).
						u.User = url.User(u.User.Username()) // its '@' is escaped
						out := u.String()
						i := strings.IndexByte(out, '@')
						a.URL = out[:i] + ":" + np + out[i:]
					} else {
						u.User = url.UserPassword(u.User.Username(), np)
						a.URL = u.String()
					}
					changed = true
				}
			}
		}
		if len(a.Headers) > 0 {
			h := make(map[string]string, len(a.Headers))
			for k, v := range a.Headers {
				nv, err := f(v)
				if err != nil {
					return fmt.Errorf("webhook %s: header %s: %w", redactedURL(a.URL), k, err)
				}
				changed = changed || nv != v
				h[k] = nv
			}
			a.Headers = h
		}
		return nil
	}
	var list []Action
	if len(r.Actions) > 0 && json.Unmarshal(r.Actions, &list) == nil {
		for i := range list {
			if err := do(&list[i]); err != nil {
				return r, false, err
			}
		}
		if changed {
			r.Actions, _ = json.Marshal(list)
		}
	}
	if len(r.ErrorAction) > 0 && string(r.ErrorAction) != "null" {
		var a Action
		if json.Unmarshal(r.ErrorAction, &a) == nil {
			before := changed
			changed = false
			if err := do(&a); err != nil {
				return r, false, err
			}
			if changed {
				r.ErrorAction, _ = json.Marshal(a)
			}
			changed = changed || before
		}
	}
	return r, changed, nil
}

// sealRule returns r with its plain secrets sealed (without a Sealer: as
// is) and whether it had any plain one. Sealed values stay as they are.
func (e *Engine) sealRule(r store.Rule) (store.Rule, bool) {
	if e.opts.Sealer == nil {
		return r, false
	}
	out, changed, _ := mapSecrets(r, func(s string) (string, error) { return e.opts.Sealer.Seal(s), nil })
	return out, changed
}

// openRule returns r with its sealed secrets opened, for the API. A value
// that does not open (wrong seal.key, altered) stays sealed: an admin sees
// the sealed form instead of the rule failing to list.
func (e *Engine) openRule(r store.Rule) store.Rule {
	if e.opts.Sealer == nil {
		return r
	}
	out, _, _ := mapSecrets(r, func(s string) (string, error) {
		if p, err := e.opts.Sealer.Open(s); err == nil {
			return p, nil
		}
		return s, nil
	})
	return out
}

// openAction opens the sealed secrets of a webhook action about to run.
// One that does not open leaves the action failing every attempt with
// the error (which holds neither the value nor the sealed form).
func (e *Engine) openAction(rule string, a *compiledAction) {
	if !external(a.Type) {
		return
	}
	open := func(s string) (string, error) {
		if e.opts.Sealer == nil {
			if seal.IsSealed(s) {
				return "", seal.ErrOpen
			}
			return s, nil
		}
		return e.opts.Sealer.Open(s)
	}
	r := store.Rule{}
	r.Actions, _ = json.Marshal([]Action{a.Action})
	out, _, err := mapSecrets(r, open)
	if err != nil {
		a.sealErr = err
		e.log.Error("rule action secret does not open; the action fails until the rule is updated or the right seal.key is back",
			"rule", rule, "action", a.Type, "error", err)
		return
	}
	var list []Action
	_ = json.Unmarshal(out.Actions, &list)
	a.Action = list[0]
}
