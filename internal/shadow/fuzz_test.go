package shadow

import (
	"encoding/json"
	"testing"
	"time"
)

// FuzzUpdate applies arbitrary update documents to a shadow: nothing
// panics, every body produced is valid JSON, the stored form reads back
// to itself, and the version only grows (by one per accepted update).
// Seeds are in testdata/fuzz/FuzzUpdate.
func FuzzUpdate(f *testing.F) {
	f.Add([]byte(`{"state":{"desired":{"a":1}}}`), []byte(`{"state":{"reported":{"a":1}},"clientToken":"x"}`), []byte(`{}`))
	f.Add([]byte(`{"state":{"desired":{"o":{"a":[1,{"b":null}]}}},"version":0}`), []byte(`{"state":{"desired":null}}`), []byte(`{"state":{"desired":{"o":{"a":null}}}}`))
	f.Fuzz(func(t *testing.T, p1, p2, p3 []byte) {
		var doc *Document
		var version int64
		now := time.Unix(1_700_000_000, 0)
		for _, p := range [][]byte{p1, p2, p3, p1} {
			req, perr := ParseUpdate(p, 1024)
			if req == nil {
				t.Fatal("ParseUpdate returned a nil request")
			}
			if perr != nil {
				if b := ErrorBody(perr, req.ClientToken, req.HasToken, now); !json.Valid(b) {
					t.Fatalf("error body is not JSON: %s", b)
				}
				continue
			}
			a, err := Apply(doc, 0, req, now, 1024)
			if err != nil {
				if err != ErrVersionConflict && err != ErrTooLarge {
					t.Fatalf("unexpected rejection %v of %q", err, p)
				}
				continue
			}
			if a.Doc.Version != version+1 {
				t.Fatalf("version %d after %d", a.Doc.Version, version)
			}
			version = a.Doc.Version
			for name, b := range map[string][]byte{"stored": a.Stored, "accepted": a.Accepted, "delta": a.Delta,
				"documents": a.Documents, "get": a.Doc.GetBody(req.ClientToken, req.HasToken, now)} {
				if name == "delta" && b == nil {
					continue
				}
				if !json.Valid(b) {
					t.Fatalf("%s is not valid JSON: %s", name, b)
				}
			}
			back, err2 := ParseDocument(a.Stored)
			if err2 != nil {
				t.Fatalf("stored document does not parse: %v\n%s", err2, a.Stored)
			}
			if string(back.Encode()) != string(a.Stored) {
				t.Fatalf("stored document does not round-trip:\n%s\n%s", back.Encode(), a.Stored)
			}
			doc = a.Doc
			now = now.Add(time.Second)
		}
		for _, p := range [][]byte{p1, p2} {
			if r, err := ParseRequest(p); r == nil || (err == nil && len(r.ClientToken) > MaxTokenLen) {
				t.Fatalf("ParseRequest(%q) = %v, %v", p, r, err)
			}
		}
	})
}
