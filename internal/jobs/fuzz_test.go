package jobs

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/moteiot/mote/internal/core"
)

// FuzzParseSpec: any body either parses into a spec that validates again
// and survives a JSON round trip, or is refused with an invalid or
// too-large error; never a panic.
func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{
		`{"jobId":"j","targets":{"things":["a"]},"document":{"op":"x"}}`,
		`{"jobId":"j","targets":{"groups":["g"],"query":"x"},"documentSource":"artifact:fw","targetSelection":"continuous"}`,
		`{"jobId":"j","targets":{"things":["a"]},"document":{},"rollout":{"maximumPerMinute":100,"exponentialRate":{"baseRatePerMinute":2,"incrementFactor":1.5,"rateIncreaseCriteria":{"numberOfNotifiedThings":10}}}}`,
		`{"jobId":"j","targets":{"things":["a"]},"document":{},"abort":{"criteria":[{"failureType":"ALL","thresholdPercentage":10,"minNumberOfExecutedThings":5}]},"timeouts":{"inProgressMinutes":5},"retry":{"criteria":[{"failureType":"FAILED","numberOfRetries":2}]}}`,
		`{"jobId":"j","bogus":1}`, `[]`, `{"jobId":1}`, `{}`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sp, err := ParseSpec(data, 0)
		if err != nil {
			if k := core.KindOf(err); k != core.KindInvalid && k != core.KindTooLarge {
				t.Fatalf("ParseSpec(%q): error of kind %s: %v", data, k, err)
			}
			return
		}
		b, err := json.Marshal(sp)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseSpec(b, 0)
		if err != nil {
			t.Fatalf("a parsed spec %s does not parse again: %v", b, err)
		}
		if b2, _ := json.Marshal(again); string(b2) != string(b) {
			t.Fatalf("round trip changed the spec:\n%s\n%s", b, b2)
		}
	})
}

// FuzzParseUpdate: a device's update request is accepted with a valid
// status or refused with an AWS error code; never a panic.
func FuzzParseUpdate(f *testing.F) {
	for _, s := range []string{
		`{"status":"IN_PROGRESS","statusDetails":{"p":"50"},"expectedVersion":2,"executionNumber":1,"includeJobExecutionState":true,"includeJobDocument":true,"stepTimeoutInMinutes":5,"clientToken":"t"}`,
		`{"status":"SUCCEEDED"}`, `{"status":"DONE"}`, `{"status":1}`, `{`, ``, `{"statusDetails":{"a":1}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		u, e := ParseUpdate(data)
		if e != nil {
			switch e.Code {
			case CodeInvalidJSON, CodeInvalidRequest:
			default:
				t.Fatalf("ParseUpdate(%q): code %s", data, e.Code)
			}
			return
		}
		switch u.Status {
		case "IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED":
		default:
			t.Fatalf("ParseUpdate(%q) accepted status %q", data, u.Status)
		}
		if len(u.ClientToken) > MaxClientToken || len(u.StatusDetails) > MaxStatusDetails {
			t.Fatalf("ParseUpdate(%q) accepted %+v beyond the limits", data, u)
		}
	})
}

// FuzzParseTopic: a topic either is a request whose answer topic maps
// back to it, or is not a request.
func FuzzParseTopic(f *testing.F) {
	for _, s := range []string{"$aws/things/a/jobs/get", "$mote/things/a/jobs/start-next", "$aws/things/a/jobs/j/get",
		"$aws/things/a/jobs/$next/get", "$aws/things/a/jobs/j/update", "$aws/things/a/jobs/j/update/accepted", "$aws/things/a/jobs/notify-next", "$aws/things//jobs/get"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		prefix, r, ok := ParseTopic(topic)
		if !ok {
			return
		}
		acc := ResponseTopic(prefix, r, true)
		if acc != topic+"/accepted" {
			t.Fatalf("ParseTopic(%q) = %+v; its answer goes to %q", topic, r, acc)
		}
		if _, _, again := ParseTopic(acc); again {
			t.Fatalf("the answer topic %q parses as a request", acc)
		}
	})
}

// FuzzExpandDocument: placeholders in any JSON object expand to JSON.
func FuzzExpandDocument(f *testing.F) {
	for _, s := range []string{`{"url":"${mote:artifact:fw}","sha":"${mote:artifact:fw:sha256}","size":"${mote:artifact:fw:size}"}`,
		`{"a":["x ${mote:artifact:a:b:size} y",{"b":"${mote:artifact:}"}]}`, `{"n":1.5e300}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		var obj map[string]any
		if json.Unmarshal(doc, &obj) != nil {
			return
		}
		out, err := expandDocument(context.Background(), doc, "thing", fakeArtifacts{})
		if err != nil {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("expandDocument(%s) = %s, not JSON", doc, out)
		}
	})
}

type fakeArtifacts struct{}

func (fakeArtifacts) Resolve(_ context.Context, name, thing string) (Artifact, error) {
	if name == "missing" {
		return Artifact{}, core.NotFound("artifact", name)
	}
	return Artifact{URL: "https://mote.example/a/" + name + "?t=" + thing, SHA256: "ab12", Size: 42}, nil
}

func TestExpandDocument(t *testing.T) {
	doc := []byte(`{"url":"${mote:artifact:fw}","sha256":"${mote:artifact:fw:sha256}","size":"${mote:artifact:fw:size}","note":"get ${mote:artifact:fw} (${mote:artifact:fw:size} bytes)","keep":"${other}"}`)
	out, err := expandDocument(context.Background(), doc, "dev1", fakeArtifacts{})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"keep":"${other}","note":"get https://mote.example/a/fw?t=dev1 (42 bytes)","sha256":"ab12","size":42,"url":"https://mote.example/a/fw?t=dev1"}`
	if string(out) != want {
		t.Errorf("expandDocument =\n%s\nwant\n%s", out, want)
	}
	if _, err := expandDocument(context.Background(), []byte(`{"u":"${mote:artifact:missing}"}`), "d", fakeArtifacts{}); !core.IsNotFound(err) {
		t.Errorf("a missing artifact: %v; want not found", err)
	}
	if names := artifactNames(documentOf(Spec{DocumentSource: "artifact:fw"})); len(names) != 1 || names[0] != "fw" {
		t.Errorf("documentSource artifact:fw names %v", names)
	}
}
