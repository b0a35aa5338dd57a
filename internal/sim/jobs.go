package sim

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// The device side of jobs (docs/jobs.md): a simulated device follows the
// AWS IoT Jobs device API under $mote/things/{thing}/jobs/. It asks for
// its next job when it connects and whenever notify-next names one,
// starts it, downloads the URL the document names (verifying its sha256
// when given), reports progress, and succeeds, or fails a configured
// fraction of the time. A job whose document has a "version" (or
// "firmware") installs it: the device reports it as its firmware.

// Topic suffixes of jobs under $mote/things/{thing}/.
const (
	jobsNotifyNext = "jobs/notify-next"
	jobsStartNext  = "jobs/start-next"
	jobsStarted    = "jobs/start-next/accepted"
)

// MaxDownload bounds what a simulated device downloads for a job.
const MaxDownload = 256 << 20

// downloadTimeout bounds one download.
const downloadTimeout = 2 * time.Minute

const inJob = inDelta + 100 // an execution to run (from start-next/accepted)

// jobExecution is the part of an execution the simulator reads.
type jobExecution struct {
	JobID         string         `json:"jobId"`
	Status        string         `json:"status"`
	VersionNumber int64          `json:"versionNumber"`
	JobDocument   map[string]any `json:"jobDocument"`
}

func (d *device) jobSubscriptions() []paho.SubscribeOptions {
	return []paho.SubscribeOptions{
		{Topic: d.topic(jobsNotifyNext), QoS: 1},
		{Topic: d.topic(jobsStarted), QoS: 1},
	}
}

// receiveJob sorts a jobs message (paho's goroutine); false if rest is
// not one.
func (d *device) receiveJob(rest string, payload []byte) (inbound, bool) {
	switch rest {
	case jobsNotifyNext:
		var n struct {
			Execution *jobExecution `json:"execution"`
		}
		if json.Unmarshal(payload, &n) != nil || n.Execution == nil {
			return inbound{}, false
		}
		return inbound{kind: inJob, id: ""}, true // ask for it with start-next
	case jobsStarted:
		return inbound{kind: inJob, id: "started"}, true
	}
	return inbound{}, false
}

// askNextJob publishes start-next.
func (d *device) askNextJob(ctx context.Context, c *paho.Client) {
	if err := d.publish(ctx, c, d.topic(jobsStartNext), 1, []byte(`{}`)); err != nil && ctx.Err() == nil {
		d.f.fail(d.id.Thing, "jobs start-next", err)
	}
}

// job handles a jobs message in the device loop.
func (d *device) job(ctx context.Context, c *paho.Client, in inbound) {
	if in.id != "started" {
		d.askNextJob(ctx, c)
		return
	}
	var a struct {
		Execution *jobExecution `json:"execution"`
	}
	if err := json.Unmarshal(in.payload, &a); err != nil || a.Execution == nil || a.Execution.Status != "IN_PROGRESS" {
		return // nothing pending
	}
	d.runJob(ctx, c, *a.Execution)
}

func (d *device) updateJob(ctx context.Context, c *paho.Client, x jobExecution, status string, details map[string]string) error {
	body, _ := json.Marshal(map[string]any{"status": status, "statusDetails": details})
	return d.publish(ctx, c, d.topic("jobs/"+x.JobID+"/update"), 1, body)
}

func docString(doc map[string]any, keys ...string) string {
	for _, k := range keys {
		if s, ok := doc[k].(string); ok && s != "" {
			return s
		}
	}
	return ""
}

// runJob carries out one execution and reports its outcome.
func (d *device) runJob(ctx context.Context, c *paho.Client, x jobExecution) {
	d.f.jobs.Add(1)
	fail := func(reason string) {
		d.f.jobsFailed.Add(1)
		if err := d.updateJob(ctx, c, x, "FAILED", map[string]string{"reason": reason}); err != nil && ctx.Err() == nil {
			d.f.fail(d.id.Thing, "jobs update", err)
		}
	}
	if url := docString(x.JobDocument, "url"); url != "" {
		_ = d.updateJob(ctx, c, x, "IN_PROGRESS", map[string]string{"step": "downloading"})
		n, sum, err := d.download(ctx, url)
		if err != nil {
			fail("download: " + err.Error())
			return
		}
		if want := docString(x.JobDocument, "sha256"); want != "" && !strings.EqualFold(want, sum) {
			fail("sha256 mismatch")
			return
		}
		_ = d.updateJob(ctx, c, x, "IN_PROGRESS", map[string]string{"step": "installing", "bytes": fmt.Sprint(n)})
	}
	if d.f.opts.OTAFailureRate > 0 && d.rng.Float64() < d.f.opts.OTAFailureRate {
		fail("simulated failure (--ota-failure-rate)")
		return
	}
	if v := docString(x.JobDocument, "version", "firmware"); v != "" {
		d.firmware = v
		if err := d.report(ctx, c, map[string]any{"firmware": v}); err != nil && ctx.Err() == nil {
			d.f.fail(d.id.Thing, "shadow update", err)
		}
	}
	if err := d.updateJob(ctx, c, x, "SUCCEEDED", map[string]string{"firmware": d.firmware}); err != nil && ctx.Err() == nil {
		d.f.fail(d.id.Thing, "jobs update", err)
	}
}

// download fetches url and returns its size and hex sha256.
func (d *device) download(ctx context.Context, url string) (int64, string, error) {
	ctx, cancel := context.WithTimeout(ctx, downloadTimeout)
	defer cancel()
	url, err := resolveURL(d.f.opts.APIBase, url)
	if err != nil {
		return 0, "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := d.f.httpClient().Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, "", fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(resp.Body, MaxDownload+1))
	if err != nil {
		return 0, "", err
	}
	if n > MaxDownload {
		return 0, "", fmt.Errorf("larger than %d bytes", MaxDownload)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// httpClient is the client of job downloads: Options.HTTPClient, or one
// trusting what the MQTT connection trusts.
func (f *Fleet) httpClient() *http.Client {
	if f.opts.HTTPClient != nil {
		return f.opts.HTTPClient
	}
	f.httpOnce.Do(func() {
		// http.DefaultTransport is a *http.Transport unless something
		// wrapped it (internal/daemontest does, to check API answers).
		t := &http.Transport{Proxy: http.ProxyFromEnvironment}
		if dt, ok := http.DefaultTransport.(*http.Transport); ok {
			t = dt.Clone()
		}
		if f.opts.TLS != nil {
			t.TLSClientConfig = &tls.Config{RootCAs: f.opts.TLS.RootCAs, MinVersion: tls.VersionTLS12}
		}
		f.http = &http.Client{Transport: t}
	})
	return f.http
}

// resolveURL resolves a job document's download URL: an absolute one as
// it is, a relative one (a signed artifact URL of a server without
// --artifact-url-base) against base.
func resolveURL(base, ref string) (string, error) {
	u, err := neturl.Parse(ref)
	if err != nil {
		return "", fmt.Errorf("download URL: %w", err)
	}
	if u.IsAbs() {
		return ref, nil
	}
	if base == "" {
		return "", fmt.Errorf("download URL %q is relative and the simulator has no server URL to resolve it against", ref)
	}
	b, err := neturl.Parse(base)
	if err != nil || !b.IsAbs() {
		return "", fmt.Errorf("server URL %q is not absolute", base)
	}
	return b.ResolveReference(u).String(), nil
}
