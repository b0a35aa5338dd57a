package console_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/console"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/sim"
	"github.com/moteiot/mote/internal/store"
)

// pick sets a select's value and tells the page, as a user's choice does.
func pick(sel, value string) chromedp.Action {
	return chromedp.Evaluate(fmt.Sprintf(`(() => { const e = document.querySelector(%s); e.value = %s; e.dispatchEvent(new Event("change", {bubbles: true})); })()`,
		strconv.Quote(sel), strconv.Quote(value)), nil)
}

// setText sets a text box's value and tells the page, as typing does.
func setText(sel, value string) chromedp.Action {
	return chromedp.Evaluate(fmt.Sprintf(`(() => { const e = document.querySelector(%s); e.value = %s; e.dispatchEvent(new Event("input", {bubbles: true})); })()`,
		strconv.Quote(sel), strconv.Quote(value)), nil)
}

// runFleet provisions n simulated devices named PREFIX-0001.. and runs
// them until the test ends; failureRate is the fraction of jobs they fail.
func runFleet(t *testing.T, s *daemontest.Server, prefix string, n int, failureRate float64) *sim.Fleet {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	ids, _, err := sim.Provision(ctx, apiclient.New(s.API, s.Token), sim.ProvisionOptions{Devices: n, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	// APIBase: without --artifact-url-base the signed URLs in job
	// documents are paths on the server.
	fleet, err := sim.NewFleet(ids, sim.Options{MQTTAddr: s.MQTT, Rate: 0.2, OTAFailureRate: failureRate,
		APIBase: s.API, HTTPClient: &http.Client{Timeout: 30 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- fleet.Run(ctx) }()
	t.Cleanup(func() { stop(); <-done })
	return fleet
}

// TestJobsOTAEndToEnd, as a new user would: upload a firmware image on the
// Jobs page, start an OTA job from the form over a dynamic group of
// simulated devices and watch it succeed, see the new version in the
// overview's firmware distribution; then a second job over devices that
// fail every job, with an abort threshold, which the console shows
// aborted.
func TestJobsOTAEndToEnd(t *testing.T) {
	if !console.Built() {
		t.Skip("the console is not built (npm --prefix web ci && npm --prefix web run build); skipping the browser test")
	}
	s := daemontest.Start(t, func(c *config.Config) { c.JobSchedulerTick = 50 * time.Millisecond })
	ctx := context.Background()
	c := apiclient.New(s.API, s.Token)
	good := runFleet(t, s, "ota-ok", 3, 0)
	bad := runFleet(t, s, "ota-bad", 4, 1.0)
	daemontest.WaitFor(t, 30*time.Second, func() error {
		if g, b := good.Stats(), bad.Stats(); g.Connected != 3 || b.Connected != 4 {
			return fmt.Errorf("simulator: %d and %d connected", g.Connected, b.Connected)
		}
		return nil
	})
	// The dynamic group over the devices that succeed (groups have no
	// console page yet: the API, as a user with the CLI would).
	if _, err := c.CreateGroup(ctx, apiclient.NewGroup{Name: "ota-ok", Query: "name LIKE 'ota-ok-*'"}); err != nil {
		t.Fatal(err)
	}
	image := filepath.Join(t.TempDir(), "thermo-fw-2.0.0.bin")
	if err := os.WriteFile(image, []byte(strings.Repeat("firmware 2.0.0 ", 4096)), 0o644); err != nil {
		t.Fatal(err)
	}

	se := openBrowser(t)
	se.signIn(s.API, s.InitialPassword())
	se.run("upload the firmware on the Jobs page",
		chromedp.Click(`nav a[href="/jobs"]`),
		chromedp.WaitVisible(`//td[text()="No jobs yet."]`, chromedp.BySearch),
		chromedp.Click(`//button[text()="Upload artifact"]`, chromedp.BySearch),
		chromedp.WaitVisible(`input[name=artifact-name]`),
		chromedp.SetUploadFiles(`input[name=artifact-file]`, []string{image}),
		chromedp.SendKeys(`input[name=artifact-name]`, "thermo-fw"),
		chromedp.SendKeys(`input[name=artifact-version]`, "2.0.0"),
		chromedp.Click(`//button[text()="Upload"]`, chromedp.BySearch),
		chromedp.WaitVisible(`[data-testid=upload-result]`),
	)
	if a, err := c.GetArtifact(ctx, "thermo-fw", "2.0.0"); err != nil || a.Size != int64(15*4096) {
		t.Fatalf("uploaded artifact: %+v, %v; want 61440 bytes", a, err)
	}
	se.screenshot("jobs-01-uploaded")
	se.accessible("jobs with the upload form")

	se.run("create the OTA job over the dynamic group",
		chromedp.Click(`//button[text()="New job"]`, chromedp.BySearch),
		chromedp.WaitVisible(`input[name=jobId]`),
		chromedp.SendKeys(`input[name=jobId]`, "fw-2-0-0"),
		chromedp.SendKeys(`input[name=target-groups]`, "ota-ok"),
		// The group's members are computed in the background: the
		// form's count says when they are.
		chromedp.WaitVisible(`//div[@data-testid="groups-preview" and text()="ota-ok: 3 things"]`, chromedp.BySearch),
		chromedp.WaitReady(`select[name=artifact] option[value="thermo-fw:2.0.0"]`),
		pick(`select[name=artifact]`, "thermo-fw:2.0.0"),
		chromedp.Poll(`document.querySelector("textarea[name=document]").value.includes("mote:artifact:thermo-fw:2.0.0")`, nil),
	)
	se.accessible("the job form")
	se.screenshot("jobs-02-form")
	se.run("start it and open it",
		chromedp.Click(`//button[text()="Create job"]`, chromedp.BySearch),
		chromedp.WaitVisible(`[data-testid=job-created] a`),
		chromedp.Click(`[data-testid=job-created] a`),
		chromedp.WaitVisible(`[data-testid=job-summary] dl`),
	)
	se.run("watch it succeed",
		chromedp.WaitVisible(`//span[@data-testid="job-status" and text()="completed"]`, chromedp.BySearch),
		chromedp.WaitVisible(`//div[@role="img" and contains(@aria-label, "3 succeeded of 3 executions")]`, chromedp.BySearch),
		chromedp.WaitVisible(`//tr[@data-thing="ota-ok-0003"]/td[@data-testid="execution-status" and .="succeeded"]`, chromedp.BySearch),
	)
	se.screenshot("jobs-03-succeeded")
	se.accessible("a job")
	if j, err := c.GetJob(ctx, "fw-2-0-0"); err != nil || j.Status != "COMPLETED" || j.Counts["SUCCEEDED"] != 3 {
		t.Fatalf("job fw-2-0-0: %+v, %v; want COMPLETED with 3 SUCCEEDED", j, err)
	}

	se.run("the overview shows the new firmware on three things",
		chromedp.Click(`nav a[href="/"]`),
		chromedp.WaitVisible(`//tr[@data-version="2.0.0"]/td[.="3"]`, chromedp.BySearch),
	)
	se.screenshot("jobs-04-firmware")

	// The second job: devices that fail every job, at most 60 a minute
	// (one a second), canceled by its abort criteria once two of them
	// failed.
	se.run("a second job over a query, previewed",
		chromedp.Click(`nav a[href="/jobs"]`),
		chromedp.WaitVisible(`tr[data-job="fw-2-0-0"]`),
		chromedp.Click(`//button[text()="New job"]`, chromedp.BySearch),
		chromedp.WaitVisible(`input[name=jobId]`),
		chromedp.SendKeys(`input[name=jobId]`, "fw-2-0-0-bad"),
		// The whole query at once: typed key by key on a slow machine, a
		// pause longer than the preview's debounce sends a half-typed
		// query, whose 400 the browser logs as an error.
		chromedp.SetValue(`textarea[name=target-query]`, "name LIKE 'ota-bad-*'"),
		chromedp.Evaluate(`document.querySelector("textarea[name=target-query]").dispatchEvent(new Event("input"))`, nil),
		chromedp.WaitVisible(`//div[@data-testid="query-preview" and text()="4 things match"]`, chromedp.BySearch),
		chromedp.WaitReady(`select[name=artifact] option[value="thermo-fw:2.0.0"]`),
		pick(`select[name=artifact]`, "thermo-fw:2.0.0"),
		chromedp.SendKeys(`input[name=maximumPerMinute]`, "60"),
		pick(`select[name=abort-failureType]`, "FAILED"),
		chromedp.SendKeys(`input[name=abort-thresholdPercentage]`, "50"),
		chromedp.SetValue(`input[name=abort-minNumberOfExecutedThings]`, "2"),
		chromedp.Click(`//button[text()="Create job"]`, chromedp.BySearch),
		chromedp.WaitVisible(`[data-testid=job-created] a`),
	)
	se.run("the list shows it aborted",
		chromedp.WaitVisible(`//tr[@data-job="fw-2-0-0-bad"]//span[@data-testid="job-status" and text()="aborted"]`, chromedp.BySearch),
		chromedp.WaitVisible(`//tr[@data-job="fw-2-0-0"]//span[@data-testid="job-status" and text()="completed"]`, chromedp.BySearch),
	)
	se.screenshot("jobs-05-list")
	se.run("its page says why",
		chromedp.Click(`//tr[@data-job="fw-2-0-0-bad"]//a`, chromedp.BySearch),
		chromedp.WaitVisible(`//dd[contains(., "ABORTED")]`, chromedp.BySearch),
		chromedp.WaitVisible(`//td[@data-testid="execution-status" and .="failed"]`, chromedp.BySearch),
	)
	se.screenshot("jobs-06-aborted")
	j, err := c.GetJob(ctx, "fw-2-0-0-bad")
	if err != nil || j.Status != "CANCELED" || j.ReasonCode != "ABORTED" || j.Counts["FAILED"] < 2 || j.Counts["SUCCEEDED"] != 0 {
		t.Fatalf("job fw-2-0-0-bad: %+v, %v; want CANCELED (ABORTED) after at least 2 FAILED", j, err)
	}
	if st := bad.Stats(); st.JobsFailed < 2 {
		t.Errorf("the failing devices failed %d jobs; want at least 2", st.JobsFailed)
	}
	se.b.check(t)
}

// TestThingsBulkActions: select two things on the Things page, disable
// them, set their desired state, try a group that does not exist (each
// failure listed), and start a job with them prefilled as its targets.
func TestThingsBulkActions(t *testing.T) {
	if !console.Built() {
		t.Skip("the console is not built (npm --prefix web ci && npm --prefix web run build); skipping the browser test")
	}
	s := daemontest.Start(t)
	ctx := context.Background()
	for _, name := range []string{"bulk-1", "bulk-2", "bulk-3"} {
		if _, err := s.Registry().CreateThing(ctx, store.Thing{Name: name, Enabled: true}); err != nil {
			t.Fatal(err)
		}
	}
	c := apiclient.New(s.API, s.Token)
	se := openBrowser(t)
	se.signIn(s.API, s.InitialPassword())
	se.run("select two things",
		chromedp.Navigate(s.API+"/things"),
		chromedp.WaitVisible(`tr[data-thing="bulk-3"]`),
		chromedp.WaitNotVisible(`form[aria-label="Bulk actions"]`), // nothing selected yet
		chromedp.Click(`input[data-select="bulk-1"]`),
		chromedp.Click(`input[data-select="bulk-3"]`),
		chromedp.WaitVisible(`//strong[@data-testid="selected-count" and text()="2 things"]`, chromedp.BySearch),
	)
	se.accessible("things with a selection")
	se.run("disable them",
		pick(`select[name=bulk-action]`, "disable"),
		chromedp.Click(`//form[@aria-label="Bulk actions"]//button[text()="Apply"]`, chromedp.BySearch),
		chromedp.WaitVisible(`//p[@data-testid="bulk-summary" and text()="2 of 2 things disabled."]`, chromedp.BySearch),
		chromedp.WaitVisible(`//tr[@data-thing="bulk-3"]//span[text()="disabled"]`, chromedp.BySearch),
	)
	se.screenshot("things-bulk-disabled")
	for name, want := range map[string]bool{"bulk-1": false, "bulk-2": true, "bulk-3": false} {
		if th, err := c.GetThing(ctx, name); err != nil || th.Enabled != want {
			t.Errorf("%s: enabled %v, %v; want %v", name, th.Enabled, err, want)
		}
	}

	se.run("set their desired state",
		pick(`select[name=bulk-action]`, "desired"),
		chromedp.WaitVisible(`textarea[name=bulk-desired]`),
		chromedp.SendKeys(`textarea[name=bulk-desired]`, `{"interval": 60}`),
		chromedp.Click(`//form[@aria-label="Bulk actions"]//button[text()="Apply"]`, chromedp.BySearch),
		chromedp.WaitVisible(`//p[@data-testid="bulk-summary" and text()="2 of 2 things desired state set."]`, chromedp.BySearch),
	)
	for _, name := range []string{"bulk-1", "bulk-3"} {
		doc, err := c.GetShadow(ctx, name, "classic")
		if err != nil || !strings.Contains(string(doc), `"interval":60`) {
			t.Errorf("%s shadow: %s, %v; want desired interval 60", name, doc, err)
		}
	}

	se.run("a desired state that is not JSON is refused before anything is sent",
		setText(`textarea[name=bulk-desired]`, `{"interval": `),
		chromedp.Click(`//form[@aria-label="Bulk actions"]//button[text()="Apply"]`, chromedp.BySearch),
		chromedp.WaitVisible(`//div[@data-testid="bulk-result"]/div[@role="alert" and starts-with(text(), "The desired state is not JSON")]`, chromedp.BySearch),
	)

	se.run("a group that does not exist: each failure is listed",
		pick(`select[name=bulk-action]`, "group"),
		chromedp.WaitVisible(`input[name=bulk-group]`),
		chromedp.SendKeys(`input[name=bulk-group]`, "no-such-group"),
		chromedp.Click(`//form[@aria-label="Bulk actions"]//button[text()="Apply"]`, chromedp.BySearch),
		chromedp.WaitVisible(`//p[@data-testid="bulk-summary" and contains(text(), "0 of 2 things added to no-such-group; 2 failed")]`, chromedp.BySearch),
		chromedp.WaitVisible(`//ul[@role="alert"]/li[strong[text()="bulk-3"]]`, chromedp.BySearch),
	)
	se.screenshot("things-bulk-errors")
	se.b.mu.Lock()
	se.b.errors = nil // the browser logs the refused requests itself
	se.b.mu.Unlock()

	var things string
	se.run("start a job with them",
		pick(`select[name=bulk-action]`, "job"),
		chromedp.Click(`//form[@aria-label="Bulk actions"]//button[text()="Apply"]`, chromedp.BySearch),
		chromedp.WaitVisible(`input[name=jobId]`),
		chromedp.Value(`input[name=target-things]`, &things),
	)
	if things != "bulk-1,bulk-3" {
		t.Errorf("the job form's things = %q; want bulk-1,bulk-3", things)
	}
	se.b.check(t)
}

// TestJobQueryPreview: the job form counts the things its query matches as
// it is typed and shows a syntax error with its line and column; a query
// that matches nothing and a document that is not JSON are refused with
// the reason; a job with an execution in progress is canceled with force
// from its page.
func TestJobQueryPreview(t *testing.T) {
	if !console.Built() {
		t.Skip("the console is not built (npm --prefix web ci && npm --prefix web run build); skipping the browser test")
	}
	s := daemontest.Start(t)
	ctx := context.Background()
	for _, th := range []store.Thing{
		{Name: "ams-1", Enabled: true, Attributes: map[string]string{"site": "ams"}},
		{Name: "ams-2", Enabled: true, Attributes: map[string]string{"site": "ams"}},
		{Name: "rtm-1", Enabled: true, Attributes: map[string]string{"site": "rtm"}},
	} {
		if _, err := s.Registry().CreateThing(ctx, th); err != nil {
			t.Fatal(err)
		}
	}
	se := openBrowser(t)
	se.signIn(s.API, s.InitialPassword())
	se.run("type a query into the job form",
		chromedp.Navigate(s.API+"/jobs"),
		chromedp.Click(`//button[text()="New job"]`, chromedp.BySearch),
		chromedp.WaitVisible(`textarea[name=target-query]`),
		chromedp.SendKeys(`textarea[name=target-query]`, "attributes.site = 'ams'"),
		chromedp.WaitVisible(`//div[@data-testid="query-preview" and text()="2 things match"]`, chromedp.BySearch),
	)
	se.screenshot("jobs-query-preview")
	var msg string
	se.run("break it on its second line",
		chromedp.SendKeys(`textarea[name=target-query]`, " AND\nconnected = 'yes'"),
		chromedp.WaitVisible(`//div[@data-testid="query-preview" and starts-with(text(), "at 2:13:")]`, chromedp.BySearch),
		chromedp.Text(`[data-testid=query-preview]`, &msg),
	)
	if !strings.Contains(msg, "connected is true or false") {
		t.Errorf("preview error = %q", msg)
	}

	se.run("a query that matches nothing is refused",
		setText(`textarea[name=target-query]`, "attributes.site = 'nowhere'"),
		chromedp.WaitVisible(`//div[@data-testid="query-preview" and text()="0 things match"]`, chromedp.BySearch),
		chromedp.SendKeys(`input[name=jobId]`, "ams-reboot"),
		chromedp.Click(`//button[text()="Create job"]`, chromedp.BySearch),
		chromedp.WaitVisible(`//form[@aria-label="New job"]/div[@role="alert" and text()="the targets match no thing"]`, chromedp.BySearch),
	)
	se.run("a document that is not JSON is refused before it is sent",
		setText(`textarea[name=target-query]`, "attributes.site = 'ams'"),
		chromedp.WaitVisible(`//div[@data-testid="query-preview" and text()="2 things match"]`, chromedp.BySearch),
		setText(`textarea[name=document]`, `{"operation": "reboot"`),
		chromedp.Click(`//button[text()="Create job"]`, chromedp.BySearch),
		chromedp.WaitVisible(`//form[@aria-label="New job"]/div[@role="alert" and starts-with(text(), "The job document is not JSON")]`, chromedp.BySearch),
	)
	if _, err := apiclient.New(s.API, s.Token).GetJob(ctx, "ams-reboot"); err == nil {
		t.Fatal("a job was created from a refused form")
	}
	se.run("create it",
		setText(`textarea[name=document]`, `{"operation": "reboot"}`),
		chromedp.Click(`//button[text()="Create job"]`, chromedp.BySearch),
		chromedp.WaitVisible(`[data-testid=job-created] a`),
	)

	// ams-1 starts it over the HTTP device API; a cancel with force
	// cancels that execution too.
	_, secret := s.Secret(t, "ams-1")
	req, _ := http.NewRequest("POST", s.API+"/api/v1/devices/ams-1/jobs/start-next", strings.NewReader(`{}`))
	req.SetBasicAuth("ams-1", secret)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("start-next: %s", res.Status)
	}
	se.run("cancel it with force from its page",
		chromedp.Click(`[data-testid=job-created] a`),
		chromedp.WaitVisible(`//tr[@data-thing="ams-1"]/td[@data-testid="execution-status" and .="in progress"]`, chromedp.BySearch),
		chromedp.Evaluate(`window.confirm = () => true`, nil),
		chromedp.Click(`input[name=force]`),
		chromedp.Click(`//button[text()="Cancel job"]`, chromedp.BySearch),
		chromedp.WaitVisible(`//span[@data-testid="job-status" and text()="canceled"]`, chromedp.BySearch),
		chromedp.WaitVisible(`//tr[@data-thing="ams-1"]/td[@data-testid="execution-status" and .="canceled"]`, chromedp.BySearch),
	)
	se.screenshot("jobs-canceled-force")
	j, err := apiclient.New(s.API, s.Token).GetJob(ctx, "ams-reboot")
	if err != nil || j.Status != "CANCELED" || j.Counts["CANCELED"] != 2 {
		t.Fatalf("job ams-reboot: %+v, %v; want CANCELED with both executions CANCELED (force)", j, err)
	}
	se.b.mu.Lock()
	se.b.errors = nil // the browser logs the 400s of the broken query and the empty target itself
	se.b.mu.Unlock()
	se.b.check(t)
}
