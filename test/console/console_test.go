// Package console_test drives the web console in headless Chromium against
// a real server, as a user would: sign in, create a thing, connect a real
// MQTT client with the credentials the page shows, see its telemetry on
// the chart, set a desired value and see the delta reach the device, send
// a command and see it succeed. Screenshots of every page go to
// $MOTE_SCREENSHOTS (default test/console/screenshots). Any error in the
// browser's console fails the test.
//
// It skips when the console is not built (npm --prefix web run build) or
// no Chromium is installed (apt-get install chromium).
package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/console"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/sim"
)

func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("MOTE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium found (apt-get install chromium, or set MOTE_CHROMIUM); skipping the browser test")
	return ""
}

func screenshotDir(t *testing.T) string {
	dir := os.Getenv("MOTE_SCREENSHOTS")
	if dir == "" {
		dir = "screenshots"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser collects what the page logs as an error.
type browser struct {
	mu     sync.Mutex
	errors []string
}

func (b *browser) add(s string) {
	b.mu.Lock()
	b.errors = append(b.errors, s)
	b.mu.Unlock()
}

func (b *browser) check(t *testing.T) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.errors {
		t.Errorf("browser console: %s", e)
	}
	b.errors = nil
}

// session is a headless Chromium on a page of the console.
type session struct {
	ctx   context.Context
	b     *browser
	shots string
	t     *testing.T
}

// One Chromium serves the whole package: starting one took a second or
// two of CPU for each of the ~20 tests. Each test gets its own tab in its
// own browser context (no cookies, storage or cache shared with another
// test), closed when the test ends; TestMain closes the browser.
var shared struct {
	once   sync.Once
	ctx    context.Context // the browser's first tab
	cancel func()
	err    error
}

// sharedBrowser starts Chromium once.
func sharedBrowser(exe string) (context.Context, error) {
	shared.once.Do(func() {
		opts := append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(exe),
			chromedp.NoSandbox, // CI runs as root
			chromedp.Flag("headless", true),
			chromedp.Flag("disable-gpu", true),
			chromedp.Flag("disable-dev-shm-usage", true),
			chromedp.WindowSize(1280, 900), // a laptop
		)
		actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		bctx, cancelBrowser := chromedp.NewContext(actx)
		shared.ctx, shared.cancel = bctx, func() { cancelBrowser(); cancelAlloc() }
		// Start the browser on bctx itself, which owns it (chromedp waits
		// at most 20 s for it to come up).
		shared.err = chromedp.Run(bctx)
	})
	return shared.ctx, shared.err
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.cancel != nil {
		shared.cancel()
	}
	os.Exit(code)
}

// openBrowser opens a tab of the shared Chromium in a fresh browser
// context (closed when the test ends) and collects what its pages log as
// errors.
func openBrowser(t *testing.T) *session {
	t.Helper()
	exe := chromium(t)
	bctx, err := sharedBrowser(exe)
	if err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	// A browser context and a window in it, made here rather than with
	// chromedp.WithNewBrowserContext, whose tab (no new window) headless
	// Chromium refuses: "Failed to open new tab - no browser is open".
	var (
		bcID cdp.BrowserContextID
		tab  target.ID
	)
	if err := chromedp.Run(bctx, chromedp.ActionFunc(func(ctx context.Context) error {
		exec := cdp.WithExecutor(ctx, chromedp.FromContext(ctx).Browser)
		var err error
		if bcID, err = target.CreateBrowserContext().Do(exec); err != nil {
			return err
		}
		tab, err = target.CreateTarget("about:blank").WithBrowserContextID(bcID).WithNewWindow(true).Do(exec)
		return err
	})); err != nil {
		t.Fatalf("open a window: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(bctx, 10*time.Second)
		defer cancel()
		_ = target.DisposeBrowserContext(bcID).Do(cdp.WithExecutor(ctx, chromedp.FromContext(bctx).Browser))
	})
	ctx, cancelCtx := chromedp.NewContext(bctx, chromedp.WithTargetID(tab))
	t.Cleanup(cancelCtx)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(cancel)

	// Open the tab on ctx itself: a step's shorter context must not own it.
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	b := &browser{}
	chromedp.ListenTarget(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.APITypeError {
				var parts []string
				for _, a := range ev.Args {
					parts = append(parts, string(a.Value)+a.Description)
				}
				b.add("console.error: " + strings.Join(parts, " "))
			}
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			text := d.Text
			if d.Exception != nil {
				text += " " + d.Exception.Description
			}
			b.add(fmt.Sprintf("exception: %s (%s:%d)", text, d.URL, d.LineNumber))
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.LevelError {
				b.add(fmt.Sprintf("%s: %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
			}
		}
	})
	se := &session{ctx: ctx, b: b, shots: screenshotDir(t), t: t}
	se.run("enable logs", log.Enable(), runtime.Enable())
	return se
}

// run runs one step; a failure saves a screenshot and ends the test.
func (se *session) run(step string, actions ...chromedp.Action) {
	t := se.t
	t.Helper()
	sctx, cancel := context.WithTimeout(se.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Run(sctx, actions...); err != nil {
		var shot []byte
		_ = chromedp.Run(se.ctx, chromedp.FullScreenshot(&shot, 80))
		if len(shot) > 0 {
			_ = os.WriteFile(filepath.Join(se.shots, "failed.jpg"), shot, 0o644)
		}
		se.b.mu.Lock()
		for _, e := range se.b.errors {
			t.Logf("browser console: %s", e)
		}
		se.b.mu.Unlock()
		t.Fatalf("%s: %v", step, err)
	}
}

// screenshot saves the page as NAME.jpg in the screenshot folder.
func (se *session) screenshot(name string) {
	t := se.t
	t.Helper()
	var shot []byte
	se.run("screenshot "+name, chromedp.Sleep(300*time.Millisecond), chromedp.FullScreenshot(&shot, 90))
	if err := os.WriteFile(filepath.Join(se.shots, name+".jpg"), shot, 0o644); err != nil {
		t.Fatal(err)
	}
}

// accessible checks, on the current page, that every form control has a
// name a screen reader can say (a label, aria-label or, for buttons, text)
// and every image an alt text.
func (se *session) accessible(page string) {
	se.t.Helper()
	var bad []string
	se.run("accessibility of "+page, chromedp.Evaluate(`[...document.querySelectorAll('input:not([type=hidden]),select,textarea,button,img')]
		.filter(e => e.tagName === 'IMG' ? !e.hasAttribute('alt') :
			!((e.labels && e.labels.length) || e.getAttribute('aria-label') || e.getAttribute('aria-labelledby') ||
			  (e.tagName === 'BUTTON' && e.textContent.trim())))
		.map(e => e.outerHTML.slice(0, 100))`, &bad))
	for _, b := range bad {
		se.t.Errorf("%s: control without an accessible name: %s", page, b)
	}
}

// signIn opens the console and signs in as admin.
func (se *session) signIn(api, password string) {
	se.t.Helper()
	se.run("open the console", chromedp.Navigate(api+"/"), chromedp.WaitVisible(`input[name=password]`))
	se.run("sign in",
		chromedp.SendKeys(`input[name=password]`, password),
		chromedp.Click(`form.login button[type=submit]`),
		chromedp.WaitVisible(`[data-testid=things-total]`),
	)
}

func TestConsoleEndToEnd(t *testing.T) {
	if !console.Built() {
		t.Skip("the console is not built (npm --prefix web ci && npm --prefix web run build); skipping the browser test")
	}
	s := daemontest.Start(t)
	password := s.InitialPassword()
	if password == "" {
		t.Fatal("no initial admin password")
	}

	se := openBrowser(t)
	b, run, screenshot := se.b, se.run, se.screenshot

	// Sign in.
	run("open the console", chromedp.Navigate(s.API+"/"), chromedp.WaitVisible(`input[name=password]`))
	screenshot("01-login")
	run("wrong password shows an error",
		chromedp.SendKeys(`input[name=password]`, "not-the-password"),
		chromedp.Click(`form.login button[type=submit]`),
		chromedp.WaitVisible(`.error`),
	)
	var msg string
	run("read the error", chromedp.Text(`.error`, &msg))
	if !strings.Contains(msg, "wrong user name or password") {
		t.Errorf("login error = %q", msg)
	}
	b.mu.Lock()
	b.errors = nil // the browser logs the 401 of the failed sign-in itself
	b.mu.Unlock()
	run("sign in",
		chromedp.Evaluate(`document.querySelector("input[name=password]").value = ""`, nil),
		chromedp.SendKeys(`input[name=password]`, password),
		chromedp.Click(`form.login button[type=submit]`),
		chromedp.WaitVisible(`[data-testid=things-total]`),
		chromedp.WaitNotPresent(`//strong[@data-testid="rate-in" and text()="…"]`, chromedp.BySearch),
	)
	screenshot("02-overview")

	// Create a thing with a secret.
	var secret, example string
	run("create a thing",
		chromedp.Click(`nav a[href="/things"]`),
		chromedp.WaitVisible(`form.filters`),
		chromedp.Click(`//button[text()="New thing"]`, chromedp.BySearch),
		chromedp.WaitVisible(`input[name=name]`),
		chromedp.SendKeys(`input[name=name]`, "dev-1"),
		chromedp.SendKeys(`input[name=attributes]`, "site=ams"),
		chromedp.Click(`//button[text()="Create"]`, chromedp.BySearch),
		chromedp.WaitVisible(`[data-testid=cred-secret]`),
		chromedp.Text(`[data-testid=cred-secret]`, &secret),
		chromedp.Text(`[data-testid=cred-example]`, &example),
		chromedp.WaitVisible(`//td/a[text()="dev-1"]`, chromedp.BySearch),
	)
	if secret == "" || !strings.Contains(example, "mosquitto_pub") || !strings.Contains(example, secret) {
		t.Fatalf("credentials shown: secret %q, example %q", secret, example)
	}
	screenshot("03-things")

	// A real device with the credentials the page showed.
	dev := s.V5(t, "dev-1", secret)
	dev.Sub(t, "$aws/things/dev-1/shadow/update/delta")
	dev.Sub(t, "$mote/things/dev-1/commands/+")

	run("open the thing page",
		chromedp.Click(`//td/a[text()="dev-1"]`, chromedp.BySearch),
		chromedp.WaitVisible(`[data-testid=charts]`),
		chromedp.WaitVisible(`//span[@class="badge on" and text()="connected"]`, chromedp.BySearch),
	)

	// Telemetry reaches the chart. The page's event stream may open just
	// after a publish (a message in between is not replayed, the next one
	// is shown): publish again until the chart shows the value, 10 times at
	// most, then wait as any step does.
	firstTemp := chromedp.WaitVisible(`//span[@data-testid="last-temp" and text()="21.5"]`, chromedp.BySearch)
	for range 10 {
		dev.Pub(t, "things/dev-1/telemetry", 1, false, `{"temp": 21.5}`)
		c, cancel := context.WithTimeout(se.ctx, 2*time.Second)
		err := chromedp.Run(c, firstTemp)
		cancel()
		if err == nil {
			break
		}
	}
	run("chart shows the first value", firstTemp)
	dev.Pub(t, "things/dev-1/telemetry", 1, false, `{"temp": 23}`)
	run("chart shows the next value",
		chromedp.WaitVisible(`//span[@data-testid="last-temp" and text()="23"]`, chromedp.BySearch),
		chromedp.WaitVisible(`//ul[@data-testid="messages"]/li`, chromedp.BySearch),
	)

	// A desired value reaches the device as a delta.
	run("set desired",
		chromedp.Evaluate(`document.querySelector("textarea[name=desired]").value = '{"led": "on"}'`, nil),
		chromedp.Click(`//button[text()="Set desired"]`, chromedp.BySearch),
	)
	delta := dev.Inbox.Wait(t, "$aws/things/dev-1/shadow/update/delta", 10*time.Second)
	var d struct {
		State map[string]any `json:"state"`
	}
	if err := json.Unmarshal([]byte(delta.Payload), &d); err != nil || d.State["led"] != "on" {
		t.Fatalf("delta at the device = %s", delta.Payload)
	}
	run("the page shows the delta", chromedp.WaitVisible(`//pre[@data-testid="delta" and contains(text(), "led")]`, chromedp.BySearch))

	// A command is delivered, the device reports success, the page shows it.
	run("send a command", chromedp.Click(`//button[text()="Send command"]`, chromedp.BySearch))
	var cmdTopic string
	daemontest.WaitFor(t, 10*time.Second, func() error {
		for _, m := range dev.Inbox.All() {
			if strings.HasPrefix(m.Topic, "$mote/things/dev-1/commands/") {
				cmdTopic = m.Topic
				return nil
			}
		}
		return fmt.Errorf("no command at the device; got %v", dev.Inbox.All())
	})
	dev.Pub(t, cmdTopic+"/result", 1, false, `{"status": "succeeded", "output": {"rebooted": true}}`)
	run("the command succeeded", chromedp.WaitVisible(`[data-testid=commands] [data-status=succeeded]`))

	// A file the device uploads appears in the thing's files (live).
	req, _ := http.NewRequest("PUT", s.API+"/api/v1/devices/dev-1/files/boot.log", strings.NewReader("booted\n"))
	req.Header.Set("Authorization", "Bearer "+secret)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 201 {
		t.Fatalf("device file upload: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	run("the page lists the uploaded file",
		chromedp.WaitVisible(`//tbody[@data-testid="files"]//code[text()="boot.log"]`, chromedp.BySearch),
		chromedp.WaitVisible(`//tbody[@data-testid="files"]//a[text()="Download"]`, chromedp.BySearch),
	)
	screenshot("04-thing")

	run("rules page",
		chromedp.Click(`nav a[href="/rules"]`),
		chromedp.WaitVisible(`//td[text()="telemetry"]`, chromedp.BySearch),
		chromedp.Click(`//button[text()="New rule"]`, chromedp.BySearch),
		chromedp.WaitVisible(`textarea[name=sql]`),
		chromedp.Click(`//button[text()="Test"]`, chromedp.BySearch),
		chromedp.WaitVisible(`//pre[@data-testid="rule-test-output" and contains(text(), "Matched")]`, chromedp.BySearch),
	)
	screenshot("05-rules")

	run("back to the overview",
		chromedp.Click(`nav a[href="/"]`),
		chromedp.WaitVisible(`//strong[@data-testid="things-connected" and text()="1"]`, chromedp.BySearch),
	)
	screenshot("06-overview-live")
	b.check(t)

	run("sign out", chromedp.Click(`//button[text()="Sign out"]`, chromedp.BySearch), chromedp.WaitVisible(`input[name=password]`))
	b.check(t)
}

// TestConsoleWithSimulatedFleet is the new user's first minute: a server,
// `mote sim --devices 20` (the simulator's packages, as the command runs
// them), and every page of the console shows the fleet's real data with
// no error in the browser console.
func TestConsoleWithSimulatedFleet(t *testing.T) {
	if !console.Built() {
		t.Skip("the console is not built (npm --prefix web ci && npm --prefix web run build); skipping the browser test")
	}
	s := daemontest.Start(t)
	ctx, stop := context.WithCancel(context.Background())
	ids, _, err := sim.Provision(ctx, apiclient.New(s.API, s.Token), sim.ProvisionOptions{Devices: 20})
	if err != nil {
		t.Fatal(err)
	}
	fleet, err := sim.NewFleet(ids, sim.Options{MQTTAddr: s.MQTT, Rate: 2})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- fleet.Run(ctx) }()
	defer func() { stop(); <-done }()
	daemontest.WaitFor(t, 30*time.Second, func() error {
		if st := fleet.Stats(); st.Connected != 20 || st.Sent < 40 {
			return fmt.Errorf("simulator: %+v", st)
		}
		return nil
	})

	se := openBrowser(t)
	se.signIn(s.API, s.InitialPassword())
	se.run("the overview counts the fleet",
		chromedp.WaitVisible(`//strong[@data-testid="things-total" and text()="20"]`, chromedp.BySearch),
		chromedp.WaitVisible(`//strong[@data-testid="things-connected" and text()="20"]`, chromedp.BySearch),
		chromedp.WaitNotPresent(`//strong[@data-testid="rate-in" and (text()="…" or text()="0")]`, chromedp.BySearch),
	)
	se.screenshot("fleet-01-overview")
	se.accessible("overview")

	first := sim.ThingName(sim.DefaultPrefix, 1)
	se.run("the things page lists the simulated devices (reached with the keyboard)",
		chromedp.Focus(`nav a[href="/things"]`),
		chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible(`//td/a[text()="`+first+`"]`, chromedp.BySearch),
	)
	se.screenshot("fleet-02-things")
	se.accessible("things")

	var method string
	se.run("a device page: live telemetry, reported shadow, a direct method",
		// Clicked in the page, in one step: the list re-renders on live
		// presence updates, which can replace the link between a lookup
		// and a click (chromedp: "Could not find node with given id").
		chromedp.Evaluate(`[...document.querySelectorAll("td a")].find((a) => a.textContent === `+strconv.Quote(first)+`).click()`, nil),
		chromedp.WaitVisible(`//span[@class="badge on" and text()="connected"]`, chromedp.BySearch),
		chromedp.WaitVisible(`//span[@data-testid="last-temperature" and string-length(text()) > 0]`, chromedp.BySearch),
		chromedp.WaitVisible(`//pre[@data-testid="reported" and contains(text(), "firmware")]`, chromedp.BySearch),
		chromedp.WaitVisible(`//ul[@data-testid="messages"]/li`, chromedp.BySearch),
		chromedp.SetValue(`input[name=method]`, "locate"),
		chromedp.Click(`//button[text()="Invoke"]`, chromedp.BySearch),
		chromedp.WaitVisible(`//pre[@data-testid="method-response" and contains(text(), "status 200")]`, chromedp.BySearch),
		chromedp.Text(`[data-testid=method-response]`, &method),
	)
	if !strings.Contains(method, "lat") {
		t.Errorf("locate answered %q; want a position", method)
	}
	se.screenshot("fleet-03-thing")
	se.accessible("thing")

	se.run("the rules page shows the telemetry rule",
		chromedp.Click(`nav a[href="/rules"]`),
		chromedp.WaitVisible(`//td[text()="telemetry"]`, chromedp.BySearch),
	)
	se.screenshot("fleet-04-rules")
	se.accessible("rules")
	se.b.check(t)
}
