package ruleengine

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/moteiot/mote/internal/pgtest"
	"github.com/moteiot/mote/internal/store"
)

func pgConn(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// TestPostgresAction: outputs become rows of a real PostgreSQL table
// through the column mapping, values converted to the columns' types
// (integer, double, boolean, jsonb, timestamptz, text, NULL for a missing
// member); a row the table refuses goes to the error action, whose error
// does not quote the value.
func TestPostgresAction(t *testing.T) {
	url := pgtest.DB(t)
	db := pgConn(t, url)
	if _, err := db.Exec(t.Context(), `CREATE SCHEMA plant; CREATE TABLE plant.readings (
		device text NOT NULL, n integer, temp double precision, ok boolean, meta jsonb, at timestamptz, note text)`); err != nil {
		t.Fatal(err)
	}
	pub := &countingPublisher{}
	v := newEnv(t, func(o *Options) {
		o.Publisher, o.BreakerFailures = pub, 1000
		o.Logger = slog.New(slog.NewTextHandler(tWriter{t}, nil))
	})
	if _, err := v.e.Create(t.Context(), store.Rule{Name: "to-pg", Enabled: true,
		SQL: "SELECT topic(2) AS device, n, temp, ok, meta, at FROM 'things/+/data'",
		Actions: json.RawMessage(`[{"type":"postgres","url":"` + url + `","table":"plant.readings",
			"columns":{"device":"device","n":"n","temp":"temp","ok":"ok","meta":"meta","at":"at","note":"missing"},"retries":0}]`),
		ErrorAction: json.RawMessage(`{"type":"republish","topic":"errors/pg"}`)}); err != nil {
		t.Fatal(err)
	}
	const n = 50
	for i := range n {
		v.publish(fmt.Sprintf("things/t%d/data", i%5), fmt.Sprintf(`{"n":%d,"temp":%d.5,"ok":true,"meta":{"fw":"1.%d"},"at":"2026-01-02T03:04:05Z"}`, i, i, i))
	}
	v.publish("things/bad/data", `{"n":"secret-value-abc"}`)
	waitFor(t, func() error {
		var c int
		if err := db.QueryRow(t.Context(), `SELECT count(*) FROM plant.readings`).Scan(&c); err != nil {
			return err
		}
		if c != n {
			return fmt.Errorf("%d rows; want %d", c, n)
		}
		if got := pub.count("errors/pg"); got != 1 {
			return fmt.Errorf("error action ran %d times; want 1", got)
		}
		return nil
	})
	var (
		device, fw string
		num        int
		temp       float64
		ok         bool
		at         time.Time
		note       *string
	)
	if err := db.QueryRow(t.Context(), `SELECT device, n, temp, ok, meta->>'fw', at, note FROM plant.readings WHERE n = 7`).
		Scan(&device, &num, &temp, &ok, &fw, &at, &note); err != nil {
		t.Fatal(err)
	}
	if device != "t2" || num != 7 || temp != 7.5 || !ok || fw != "1.7" || !at.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) || note != nil {
		t.Errorf("row = %s %d %v %v %s %v %v", device, num, temp, ok, fw, at, note)
	}
	waitMetric(t, v.reg, n, "mote_rule_action_total", "to-pg", "postgres", "success")
}

// TestPostgresErrorHidesValues: a value the column refuses fails the
// batch; the logged error names the SQLSTATE, not the value.
func TestPostgresErrorHidesValues(t *testing.T) {
	url := pgtest.DB(t)
	db := pgConn(t, url)
	if _, err := db.Exec(t.Context(), `CREATE TABLE r (n integer)`); err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		logs strings.Builder
	)
	v := newEnv(t, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			return logs.Write(p)
		}), nil))
	})
	if _, err := v.e.Create(t.Context(), store.Rule{Name: "to-pg", Enabled: true, SQL: "SELECT n FROM 'things/+/data'",
		Actions: json.RawMessage(`[{"type":"postgres","url":"` + url + `","table":"r","columns":{"n":"n"},"retries":0}]`)}); err != nil {
		t.Fatal(err)
	}
	v.publish("things/t1/data", `{"n":"secret-value-abc"}`)
	waitMetric(t, v.reg, 1, "mote_rule_actions_dropped_total", "to-pg", dropRetriesExhausted)
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	if strings.Contains(out, "secret-value-abc") || !strings.Contains(out, "SQLSTATE 22P02") {
		t.Errorf("log = %s; want the SQLSTATE and not the value", out)
	}
}
