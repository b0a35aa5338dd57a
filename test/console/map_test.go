package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"github.com/moteiot/mote/internal/apiclient"
	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/console"
	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/telemetry"
)

// markerJS evaluates to [lat, lon, state] of thing's marker on the map
// in the element sel (clustered or not), or null.
func markerJS(sel, thing string) string {
	return fmt.Sprintf(`document.querySelector(%q)?.marker?.(%q)`, sel, thing)
}

// A new user with a moving device: the overview and the Map page show
// it, a geofence drawn on the map becomes a geofence analytics rule, the
// marker follows the device, the device leaving the fence raises an alarm
// that appears on the Alarms page without a reload, and acknowledging it
// there acknowledges it (checked over the API). No tiles: the server's
// --map-tile-url is "" (daemontest), the map draws on a plain background.
func TestMapGeofenceAlarmAsNewUser(t *testing.T) {
	if !console.Built() {
		t.Skip("the console is not built (npm --prefix web ci && npm --prefix web run build); skipping the browser test")
	}
	s := daemontest.Start(t)
	ctx := context.Background()
	api := apiclient.New(s.API, s.Token)
	secret := s.Device(t, "truck-1")
	dev := s.V5(t, "truck-1", secret)
	// The device's GPS path: it starts at the depot and drives east.
	at := func(lat, lon float64) {
		t.Helper()
		dev.Pub(t, "things/truck-1/telemetry", 1, false, fmt.Sprintf(`{"lat": %v, "lon": %v, "speed": 30}`, lat, lon))
	}
	at(52.0, 4.0)

	se := openBrowser(t)
	se.signIn(s.API, s.InitialPassword())
	se.run("the overview shows the device on the fleet map",
		chromedp.WaitVisible(`[data-testid=overview-map] .map-pin.green`),
		chromedp.WaitVisible(`[data-testid=no-alarms]`),
	)
	se.screenshot("map-01-overview")

	se.run("open the map", chromedp.Click(`nav a[href="/map"]`), chromedp.WaitVisible(`[data-testid=fleet-map] .map-pin.green[title="truck-1"]`))
	se.accessible("map")

	// Draw a circle around the device: centre on it, radius 80 px.
	var pt []float64
	// At zoom 14 (set here: the fit may still be on its way) 80 px are
	// about 470 m.
	se.run("where the device is on the screen", chromedp.Evaluate(`(() => {
		const el = document.querySelector("[data-testid=fleet-map]");
		el.leafletMap.setView([52.0, 4.0], 14, {animate: false});
		const p = el.leafletMap.latLngToContainerPoint([52.0, 4.0]);
		const r = el.getBoundingClientRect();
		return [r.left + p.x, r.top + p.y];
	})()`, &pt))
	x, y := pt[0], pt[1]
	se.run("draw a circle",
		chromedp.Click(`[data-testid=draw-circle]`),
		chromedp.ActionFunc(func(ctx context.Context) error {
			for _, p := range [][2]float64{{x + 3, y}, {x + 80, y}} {
				if err := input.DispatchMouseEvent(input.MouseMoved, p[0], p[1]).Do(ctx); err != nil {
					return err
				}
				if err := chromedp.MouseClickXY(p[0], p[1]).Do(ctx); err != nil {
					return err
				}
			}
			return nil
		}),
		chromedp.WaitVisible(`input[name=fence-name]`),
		chromedp.SendKeys(`input[name=fence-name]`, "depot"),
		chromedp.SetValue(`select[name=severity]`, "critical"),
		chromedp.Click(`//button[text()="Save geofence"]`, chromedp.BySearch),
		chromedp.WaitVisible(`tr[data-rule=depot]`),
		chromedp.WaitReady(`path.geofence`),
	)
	se.screenshot("map-02-geofence")
	rule, err := api.GetAnalyticsRule(ctx, "depot")
	if err != nil {
		t.Fatalf("the geofence drawn is not a rule: %v", err)
	}
	if rule.Kind != "geofence" || !strings.Contains(string(rule.Config), `"Circle"`) {
		t.Fatalf("rule = %+v %s", rule, rule.Config)
	}
	t.Logf("the geofence drawn: %s", rule.Config)

	// The device moves a little (inside the fence): the marker follows.
	at(52.0, 4.001)
	var moved bool
	se.run("the marker moves", chromedp.Poll(markerJS("[data-testid=fleet-map]", "truck-1")+`?.[1] === 4.001`, &moved, chromedp.WithPollingTimeout(10*time.Second)))

	// The Alarms page is open when the device leaves the fence.
	se.run("open the alarms page",
		chromedp.Click(`nav a[href="/alarms"]`),
		chromedp.WaitVisible(`//td[text()="No alarms match."]`, chromedp.BySearch),
	)
	for i := 1; i <= 5; i++ {
		at(52.0, 4.0+0.01*float64(i)) // 700 m a step: out of an 80 px circle at any zoom the map chose
	}
	se.run("the geofence alarm appears live",
		chromedp.WaitVisible(`tr[data-thing="truck-1"][data-type=geofence][data-status=active]`),
		chromedp.WaitVisible(`[data-testid=alarms-critical]`),
	)
	se.screenshot("map-03-alarm")
	se.accessible("alarms")
	var id string
	se.run("acknowledge it",
		chromedp.AttributeValue(`tr[data-thing="truck-1"][data-type=geofence]`, "data-alarm", &id, nil),
		chromedp.Click(`tr[data-thing="truck-1"][data-type=geofence] button[aria-label^="Acknowledge"]`),
		chromedp.WaitVisible(`//p[@data-testid="alarm-notice" and contains(text(), "acknowledged")]`, chromedp.BySearch),
	)
	a, err := api.GetAlarm(ctx, id)
	if err != nil || a.Status != store.AlarmAcknowledged {
		t.Fatalf("after Ack in the console: %+v, %v; want it acknowledged", a, err)
	}
	se.run("the acknowledged filter shows it",
		chromedp.SetValue(`select[name=status]`, "acknowledged"),
		chromedp.Click(`//button[text()="Filter"]`, chromedp.BySearch),
		chromedp.WaitVisible(`tr[data-alarm="`+id+`"][data-status=acknowledged]`),
	)
	se.screenshot("map-04-acknowledged")

	// An acknowledged alarm is not active: the thing's page and the map
	// show none; a new active one turns the marker red.
	if _, err := s.Alarms().Raise(ctx, "truck-1", "overheat", "major", nil); err != nil {
		t.Fatal(err)
	}
	se.run("the thing page lists its active alarm",
		chromedp.Navigate(s.API+"/things/truck-1"),
		chromedp.WaitVisible(`[data-testid=alarms-major]`),
		chromedp.WaitVisible(`//ul[@data-testid="thing-alarms"]//strong[text()="overheat"]`, chromedp.BySearch),
	)
	se.screenshot("map-05-thing-alarms")
	var red bool
	se.run("the marker is red on the map",
		chromedp.Click(`nav a[href="/map"]`),
		chromedp.Poll(markerJS("[data-testid=fleet-map]", "truck-1")+`?.[2] === "red"`, &red, chromedp.WithPollingTimeout(10*time.Second)),
	)
	se.b.check(t)
}

// 10,000 things with positions (loaded in bulk through the stores) draw
// clustered: the page stays responsive and shows cluster markers that add
// up to every thing.
func TestMapClusters10000(t *testing.T) {
	if !console.Built() {
		t.Skip("the console is not built (npm --prefix web ci && npm --prefix web run build); skipping the browser test")
	}
	// 10,000 markers; under the race detector (CI) 2,000, which still
	// clusters: creating and indexing 10,000 things takes minutes there.
	n := 10_000
	if raceEnabled {
		n = 2_000
	}
	// Creating 10,000 things is 10,000 commits, each synced (SQLite
	// synchronous=FULL): on tmpfs, where a sync costs nothing, it takes
	// seconds instead of half a minute.
	s := daemontest.Start(t, func(c *config.Config) {
		if dir, err := os.MkdirTemp("/dev/shm", "mote-map-test-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			c.DataDir = dir
		}
	})
	ctx := context.Background()
	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Value
	next := atomic.Int64{}
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				if _, err := s.Registry().CreateThing(ctx, store.Thing{Name: "car-" + strconv.FormatInt(i, 10), Enabled: true}); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d things created in %v", n, time.Since(start).Round(time.Millisecond))
	pts := make([]telemetry.Point, 0, 2*n)
	now := time.Now().UnixMilli()
	for i := 0; i < n; i++ {
		name := "car-" + strconv.Itoa(i)
		// A grid over Europe.
		lat, lon := 40+float64(i/100)*0.2, -5+float64(i%100)*0.3
		pts = append(pts, telemetry.Point{Thing: name, Key: "lat", TS: now, Value: telemetry.Number(lat)},
			telemetry.Point{Thing: name, Key: "lon", TS: now, Value: telemetry.Number(lon)})
	}
	if err := s.Telemetry().Append(ctx, pts, 0); err != nil {
		t.Fatal(err)
	}
	t.Logf("positions stored at %v", time.Since(start).Round(time.Millisecond))
	password := s.InitialPassword()
	s.Restart(t) // the fleet index loads the latest telemetry at start
	// The index answers 503 while it loads: wait until it holds every
	// position, as the page would after its retries.
	daemontest.WaitFor(t, 2*time.Minute, func() error {
		req, _ := http.NewRequest("GET", s.API+"/api/v1/fleet/positions?limit=1", nil)
		req.Header.Set("Authorization", "Bearer "+s.Token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		var page struct{ Total int }
		if err := json.NewDecoder(res.Body).Decode(&page); err != nil || res.StatusCode != 200 || page.Total != n {
			return fmt.Errorf("GET /fleet/positions: %d, total %d, %v; want %d", res.StatusCode, page.Total, err, n)
		}
		return nil
	})
	t.Logf("%d things with positions in %v", n, time.Since(start).Round(time.Millisecond))

	se := openBrowser(t)
	se.signIn(s.API, password)
	var count int
	inView := `[...document.querySelectorAll("[data-testid=fleet-map] .map-cluster span")].reduce((a, e) => a + Number(e.textContent), 0) + document.querySelectorAll("[data-testid=fleet-map] .map-pin").length`
	se.run("the map shows every thing, clustered",
		chromedp.Navigate(s.API+"/map"),
		chromedp.Poll(`document.querySelector("[data-testid=fleet-map]")?.dataset.markers === "`+strconv.Itoa(n)+`"`, nil, chromedp.WithPollingTimeout(20*time.Second)),
		chromedp.WaitVisible(`.map-cluster`),
		// The markers are added in chunks; the map fits them all.
		chromedp.Poll(inView+" === "+strconv.Itoa(n), nil, chromedp.WithPollingTimeout(20*time.Second)),
		chromedp.Evaluate(inView, &count),
	)
	var pins int
	se.run("few single markers", chromedp.Evaluate(`document.querySelectorAll("[data-testid=fleet-map] .map-pin").length`, &pins))
	if pins > 500 {
		t.Errorf("%d single markers in the page: not clustered", pins)
	}
	if count != n {
		t.Errorf("clusters and markers in view hold %d things; want %d", count, n)
	}
	// The page answers: a click on a cluster zooms in.
	var zoom0, zoom1 float64
	se.run("zoom into a cluster",
		chromedp.Evaluate(`document.querySelector("[data-testid=fleet-map]").leafletMap.getZoom()`, &zoom0),
		chromedp.Click(`.map-cluster`),
		chromedp.Poll(`document.querySelector("[data-testid=fleet-map]").leafletMap.getZoom() > `+strconv.FormatFloat(zoom0, 'f', -1, 64), nil, chromedp.WithPollingTimeout(10*time.Second)),
		chromedp.Evaluate(`document.querySelector("[data-testid=fleet-map]").leafletMap.getZoom()`, &zoom1),
	)
	se.screenshot("map-10000")
	t.Logf("clusters: %d things in view, %d single markers, zoom %v → %v", count, pins, zoom0, zoom1)
	se.b.check(t)
}

// A viewer sees the alarms and the geofences but no Ack, Clear, Draw,
// Edit or Delete: the console hides what the API would refuse. An
// operator's page has them (the same page, so the check can fail).
func TestAlarmsAndMapViewer(t *testing.T) {
	if !console.Built() {
		t.Skip("the console is not built (npm --prefix web ci && npm --prefix web run build); skipping the browser test")
	}
	s := daemontest.Start(t)
	ctx := context.Background()
	s.Thing(t, "pump")
	if _, err := s.Alarms().Raise(ctx, "pump", "overheat", "minor", nil); err != nil {
		t.Fatal(err)
	}
	api := apiclient.New(s.API, s.Token)
	if _, err := api.CreateAnalyticsRule(ctx, apiclient.AnalyticsRule{Name: "yard", Kind: "geofence",
		Config: []byte(`{"fence": {"type": "Polygon", "coordinates": [[[10, 50], [11, 50], [11, 51], [10, 51], [10, 50]]]}}`)}); err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct{ name, role string }{{"watcher", "viewer"}, {"ops", "operator"}} {
		if _, err := s.Users().Create(ctx, u.name, "pass-"+u.name+"-123456", u.role); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		user    string
		buttons int // Ack + Clear + Draw polygon + Draw circle + Edit shape + Delete
	}{{"watcher", 0}, {"ops", 6}} {
		se := openBrowser(t)
		se.run("sign in as "+tc.user,
			chromedp.Navigate(s.API+"/"),
			chromedp.WaitVisible(`input[name=password]`),
			chromedp.SetValue(`input[name=user]`, tc.user),
			chromedp.SendKeys(`input[name=password]`, "pass-"+tc.user+"-123456"),
			chromedp.Click(`form.login button[type=submit]`),
			chromedp.WaitVisible(`[data-testid=things-total]`),
			chromedp.WaitVisible(`[data-testid=alarms-minor]`),
		)
		var n, m int
		se.run("the alarms page",
			chromedp.Click(`nav a[href="/alarms"]`),
			chromedp.WaitVisible(`tr[data-thing=pump][data-type=overheat]`),
			chromedp.Evaluate(`document.querySelectorAll("tr[data-thing=pump] button").length`, &n),
		)
		se.run("the map page",
			chromedp.Click(`nav a[href="/map"]`),
			chromedp.WaitVisible(`tr[data-rule=yard]`),
			chromedp.WaitReady(`path.geofence`),
			chromedp.Evaluate(`document.querySelectorAll("[data-testid=draw-polygon], [data-testid=draw-circle], tr[data-rule=yard] button.small").length`, &m),
		)
		if n+m != tc.buttons {
			t.Errorf("%s sees %d alarm and %d geofence buttons; want %d in all", tc.user, n, m, tc.buttons)
		}
		se.screenshot("map-" + tc.user)
		se.b.check(t)
	}
}
