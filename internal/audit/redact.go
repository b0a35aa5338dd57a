package audit

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Redacted replaces the value of every secret-bearing field.
const Redacted = "[redacted]"

// secretFields are field names (lower case, without '-' and '_') whose
// values are secrets wherever they appear in a document.
var secretFields = map[string]bool{
	"password": true, "passwordhash": true, "newpassword": true, "oldpassword": true,
	"secret": true, "secrethash": true, "clientsecret": true,
	"token": true, "accesstoken": true, "refreshtoken": true, "idtoken": true,
	"key": true, "primarykey": true, "secondarykey": true, "privatekey": true,
	"sealedkey": true, "apikey": true, "psk": true, "hash": true,
	"authorization": true, "cookie": true, "sig": true,
	"url": true, // signed download URLs carry their own credentials
}

// secretParts are substrings that make any field name a secret one.
var secretParts = []string{"password", "secret", "token", "privatekey", "apikey", "psk"}

// IsSecretField reports whether a field of this name is redacted.
func IsSecretField(name string) bool {
	n := strings.ToLower(strings.NewReplacer("-", "", "_", "").Replace(name))
	if secretFields[n] {
		return true
	}
	for _, p := range secretParts {
		if strings.Contains(n, p) {
			return true
		}
	}
	return false
}

// Document prepares a JSON document for an entry: secret fields redacted
// at any depth, at most max bytes. It returns nil when doc is not JSON
// (nothing is kept of what cannot be redacted), and omitted true when the
// redacted document is larger than max.
func Document(doc []byte, max int) (out []byte, omitted bool) {
	doc = bytes.TrimSpace(doc)
	if len(doc) == 0 {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return nil, false
	}
	v = redact(v)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, false
	}
	out = bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if len(out) > max {
		return nil, true
	}
	return out, false
}

func redact(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if IsSecretField(k) {
				if e != nil && e != "" {
					x[k] = Redacted
				}
				continue
			}
			x[k] = redact(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = redact(e)
		}
		return x
	}
	return v
}
