package jobs_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/moteiot/mote/internal/daemontest"
)

// TestOTAJobOverAQueryWithAnArtifact wires what three packages build: a
// job whose targets are a fleet query (internal/fleetindex) and whose
// document names an artifact (internal/artifacts). The matching thing
// gets a signed download URL with the artifact's digest and size, and
// downloads it (resuming with Range) without other credentials; the thing
// that does not match gets no execution; the artifact cannot be deleted
// while the job is in progress, and can after it is canceled.
func TestOTAJobOverAQueryWithAnArtifact(t *testing.T) {
	t.Parallel()
	s := daemontest.Start(t, fastTick)
	sec1 := s.Device(t, "ams-1")
	s.Device(t, "rtm-1")
	for thing, site := range map[string]string{"ams-1": "ams", "rtm-1": "rtm"} {
		if code, body := api(t, s, "PATCH", "/things/"+thing, `{"attributes":{"site":"`+site+`"}}`); code != 200 {
			t.Fatalf("PATCH /things/%s: %d %s", thing, code, body)
		}
	}
	q := url.QueryEscape("attributes.site = 'ams'")
	daemontest.WaitFor(t, wait, func() error { // the fleet index follows the registry
		if _, body := api(t, s, "GET", "/things:count?q="+q, ""); !strings.Contains(body, `"count":1`) {
			return fmt.Errorf("count = %s", body)
		}
		return nil
	})

	firmware := strings.Repeat("firmware image ", 1000)
	sum := sha256.Sum256([]byte(firmware))
	req, _ := http.NewRequest("POST", s.API+"/api/v1/artifacts?name=fw&version=1.0.0", strings.NewReader(firmware))
	req.Header.Set("Authorization", "Bearer "+s.Token)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("upload: %d", resp.StatusCode)
	}

	d1 := s.V5(t, "ams-1", sec1)
	d1.Sub(t, "$aws/things/ams-1/jobs/#")
	code, body := api(t, s, "POST", "/jobs", `{"jobId":"ota-1","targets":{"query":"attributes.site = 'ams'"},
		"document":{"operation":"ota","url":"${mote:artifact:fw}","sha256":"${mote:artifact:fw:sha256}","size":"${mote:artifact:fw:size}"}}`)
	if code != 201 {
		t.Fatalf("POST /jobs: %d %s", code, body)
	}
	next := waitMsg(t, d1.Inbox, "$aws/things/ams-1/jobs/notify-next", `"ota-1"`)
	doc := next["execution"].(map[string]any)["jobDocument"].(map[string]any)
	link, _ := doc["url"].(string)
	if !strings.Contains(link, "/api/v1/artifacts/fw/1.0.0/download?exp=") || doc["sha256"] != hex.EncodeToString(sum[:]) || doc["size"] != float64(len(firmware)) {
		t.Fatalf("job document = %v; want a signed URL of fw@1.0.0, its sha256 and its size as a number", doc)
	}
	if !strings.HasPrefix(link, "http") {
		link = s.API + link
	}
	// The device downloads with the link alone, and resumes with Range.
	get := func(rng string) (int, string) {
		req, _ := http.NewRequest("GET", link, nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, got := get(""); code != 200 || got != firmware {
		t.Fatalf("download: %d, %d bytes; want 200 and the artifact", code, len(got))
	}
	if code, got := get("bytes=100-"); code != 206 || got != firmware[100:] {
		t.Fatalf("resumed download: %d, %d bytes; want 206 and the rest", code, len(got))
	}
	// The other site's thing got nothing.
	if _, body := api(t, s, "GET", "/things/rtm-1/jobs", ""); strings.Contains(body, "ota-1") {
		t.Fatalf("rtm-1 has an execution of ota-1: %s", body)
	}

	if code, body := api(t, s, "DELETE", "/artifacts/fw/1.0.0", ""); code != 409 || !strings.Contains(body, "ota-1") {
		t.Fatalf("deleting the artifact of a job in progress: %d %s; want 409 naming ota-1", code, body)
	}
	if code, body := api(t, s, "POST", "/jobs/ota-1/cancel", `{"force":true}`); code != 200 {
		t.Fatalf("cancel: %d %s", code, body)
	}
	if code, body := api(t, s, "DELETE", "/artifacts/fw/1.0.0", ""); code != 204 {
		t.Fatalf("deleting the artifact after the job was canceled: %d %s; want 204", code, body)
	}
}
