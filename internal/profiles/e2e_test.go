package profiles_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/store"
)

const wait = 10 * time.Second

// TestProfilesEndToEnd: a whole server. An operator creates a profile
// over the REST API for a group; the device (paho, MQTT 5) receives the
// desired state as a shadow delta, reports it, and the profile's
// compliance flips from non-compliant to compliant. The device's own
// credentials cannot touch the profile routes; a huge document, unknown
// fields and a bad query are refused with the problem named.
func TestProfilesEndToEnd(t *testing.T) {
	s := daemontest.Start(t)
	ctx := t.Context()
	api := apiclient.New(s.API, s.Token)
	if _, err := api.CreateGroup(ctx, apiclient.NewGroup{Name: "plant"}); err != nil {
		t.Fatal(err)
	}
	secret := s.Device(t, "dev1")
	if _, err := s.Registry().UpdateThing(ctx, "dev1", store.ThingPatch{Groups: []string{"plant"}}); err != nil {
		t.Fatal(err)
	}
	dev := s.V5(t, "dev1", secret)
	dev.Sub(t, "$aws/things/dev1/shadow/update/delta")

	p, err := api.CreateProfile(ctx, apiclient.ProfileInput{Name: "plant-wifi", Description: "wifi of the plant",
		Desired: json.RawMessage(`{"reportingInterval":60,"wifi":{"ssid":"plant"}}`), Target: apiclient.ProfileTarget{Group: "plant"}, Priority: 10})
	if err != nil || p.Target.Group != "plant" || p.Priority != 10 {
		t.Fatalf("CreateProfile = %+v, %v", p, err)
	}
	delta := dev.Inbox.Wait(t, "$aws/things/dev1/shadow/update/delta", wait)
	if !strings.Contains(delta.Payload, `"ssid":"plant"`) || !strings.Contains(delta.Payload, `"reportingInterval":60`) {
		t.Errorf("delta = %s; want the profile's state", delta.Payload)
	}
	daemontest.WaitFor(t, wait, func() error {
		c, err := api.GetProfileCompliance(ctx, "plant-wifi", apiclient.ListOptions{})
		if err != nil {
			return err
		}
		if c.Things != 1 || c.NonCompliant != 1 || len(c.Items) != 1 || c.Items[0].Thing != "dev1" || len(c.Items[0].Differing) != 2 {
			return fmt.Errorf("compliance = %+v; want dev1 non-compliant on 2 keys", c)
		}
		return nil
	})

	// The device applies the configuration and reports it.
	dev.Pub(t, "$aws/things/dev1/shadow/update", 1, false, `{"state":{"reported":{"reportingInterval":60,"wifi":{"ssid":"plant"}}}}`)
	daemontest.WaitFor(t, wait, func() error {
		c, err := api.GetProfileCompliance(ctx, "plant-wifi", apiclient.ListOptions{})
		if err != nil {
			return err
		}
		if c.Compliant != 1 || c.NonCompliant != 0 || len(c.Items) != 0 {
			return fmt.Errorf("compliance after the report = %+v; want compliant", c)
		}
		return nil
	})
	tp, err := api.ThingProfiles(ctx, "dev1")
	if err != nil || len(tp) != 1 || tp[0].Profile != "plant-wifi" || !tp[0].Compliant || tp[0].Keys != 2 {
		t.Errorf("ThingProfiles(dev1) = %+v, %v", tp, err)
	}

	// The device's credentials do not reach the profile routes.
	for _, auth := range []string{"Bearer " + secret, "Basic " + basic("dev1", secret)} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, s.API+"/api/v1/profiles/plant-wifi",
			strings.NewReader(`{"desired":{"reportingInterval":1},"target":{"group":"plant"}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("PUT /profiles with the device's %s = %d; want 401", strings.Fields(auth)[0], resp.StatusCode)
		}
	}
	if got, err := api.GetProfile(ctx, "plant-wifi"); err != nil || !bytes.Contains(got.Desired, []byte(`"reportingInterval":60`)) {
		t.Errorf("profile after the device's attempts = %s, %v", got.Desired, err)
	}

	// Refusals, with the problem named.
	huge := `{"blob":"` + strings.Repeat("x", 17<<10) + `"}`
	for _, c := range []struct {
		body   string
		status int
		want   string
	}{
		{`{"name":"big","desired":` + huge + `,"target":{"group":"plant"}}`, 413, "--profile-max-size"},
		{`{"name":"x","desired":{"a":1},"target":{"group":"plant"},"prio":1}`, 400, "prio"},
		{`{"name":"x","desired":{"a":1},"target":{"query":"attributes.site = 'ams' AND\nconnected = "}}`, 400, "2:"},
		{`{"name":"plant-wifi","desired":{"a":1},"target":{"group":"plant"}}`, 409, "already exists"},
	} {
		status, problem := post(t, s, "/api/v1/profiles", c.body)
		if status != c.status || !strings.Contains(problem, c.want) {
			t.Errorf("create %.80s: %d %s; want %d naming %q", c.body, status, problem, c.status, c.want)
		}
	}

	// Deleting the profile removes its keys from the desired state.
	if err := api.DeleteProfile(ctx, "plant-wifi"); err != nil {
		t.Fatal(err)
	}
	daemontest.WaitFor(t, wait, func() error {
		b, err := s.Shadows().Get(ctx, "dev1", "")
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(`"desired"`)) {
			return fmt.Errorf("shadow still has desired state: %s", b)
		}
		return nil
	})
}

func basic(user, pass string) string {
	req, _ := http.NewRequest(http.MethodGet, "http://x", nil)
	req.SetBasicAuth(user, pass)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

// post sends body as it is (unknown fields included) with the admin
// token and returns the status and the problem's text.
func post(t *testing.T, s *daemontest.Server, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, s.API+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+s.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode >= 400 && !strings.HasPrefix(ct, "application/problem+json") {
		t.Errorf("POST %s: %d with Content-Type %q; want a problem", path, resp.StatusCode, ct)
	}
	return resp.StatusCode, string(b)
}
