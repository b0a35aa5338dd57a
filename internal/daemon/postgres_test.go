package daemon_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/datadir"
	"github.com/moteiot/mote/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// get calls the API with the admin token and returns the status and body.
func get(t *testing.T, s *daemontest.Server, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", s.API+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestPostgresEndToEnd runs a whole server on PostgreSQL (--store): a
// device publishes QoS 1 telemetry over MQTT, the API returns it, and
// after a restart the thing, its credential and the telemetry are still
// there. The data directory must hold no SQLite database, and PostgreSQL
// must hold the rows: the server did not quietly fall back to SQLite.
func TestPostgresEndToEnd(t *testing.T) {
	const wait = 10 * time.Second
	url := pgtest.DB(t)
	s := daemontest.Start(t, daemontest.WithStore(url))
	secret := s.Device(t, "sensor-1")

	dev := s.V5(t, "sensor-1", secret)
	if rc := dev.Pub(t, "things/sensor-1/telemetry", 1, false, `{"temp": 21.5}`); rc != 0 {
		t.Fatalf("PUBACK reason %#x; want 0", rc)
	}
	checkTelemetry := func(when string) {
		t.Helper()
		daemontest.WaitFor(t, wait, func() error {
			code, body := get(t, s, "/api/v1/things/sensor-1/telemetry?keys=temp")
			if code != 200 || !strings.Contains(body, `"key":"temp"`) || !strings.Contains(body, `"value":21.5`) {
				return fmt.Errorf("%s: telemetry query: %d %s", when, code, body)
			}
			return nil
		})
	}
	checkTelemetry("before restart")

	if _, err := os.Stat(datadir.DB(s.Dir)); !os.IsNotExist(err) {
		t.Errorf("%s exists (err %v): the server used SQLite although --store is PostgreSQL", datadir.DB(s.Dir), err)
	}
	if _, err := os.Stat(datadir.Telemetry(s.Dir)); !os.IsNotExist(err) {
		t.Errorf("%s exists (err %v): telemetry went to SQLite although --store is PostgreSQL", datadir.Telemetry(s.Dir), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var things, points int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM things WHERE name = 'sensor-1'),
		(SELECT count(*) FROM telemetry_points)`).Scan(&things, &points); err != nil {
		t.Fatal(err)
	}
	if things != 1 || points != 1 {
		t.Errorf("PostgreSQL holds %d things named sensor-1 and %d points; want 1 and 1", things, points)
	}

	// The pools are measured: both were used, none is over its bound.
	code, metrics := get(t, s, "/metrics")
	for _, pool := range []string{"store", "telemetry"} {
		m := regexp.MustCompile(`(?m)^mote_store_pool_acquires_total\{pool="` + pool + `"\} (\d+)`).FindStringSubmatch(metrics)
		if code != 200 || m == nil || m[1] == "0" {
			t.Errorf("/metrics: mote_store_pool_acquires_total{pool=%q} = %v; want > 0 (status %d)", pool, m, code)
		}
		if !strings.Contains(metrics, `mote_store_pool_max_connections{pool="`+pool+`"} 10`) {
			t.Errorf("/metrics: no mote_store_pool_max_connections{pool=%q} 10 (--store-max-conns)", pool)
		}
	}

	s.Restart(t)
	if code, body := get(t, s, "/api/v1/things/sensor-1"); code != 200 {
		t.Fatalf("after restart: GET thing = %d %s; want 200", code, body)
	}
	checkTelemetry("after restart")
	// The credential survived too: the device connects again.
	dev2 := s.V5(t, "sensor-1", secret)
	if rc := dev2.Pub(t, "things/sensor-1/telemetry", 1, false, `{"temp": 22}`); rc != 0 {
		t.Fatalf("after restart: PUBACK reason %#x; want 0", rc)
	}
	daemontest.WaitFor(t, wait, func() error {
		code, body := get(t, s, "/api/v1/things/sensor-1/telemetry/latest")
		if code != 200 || !strings.Contains(body, `"value":22`) {
			return fmt.Errorf("latest after restart: %d %s", code, body)
		}
		return nil
	})
}
