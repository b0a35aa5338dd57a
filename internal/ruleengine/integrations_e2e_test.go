package ruleengine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/pgtest"
)

// TestKafkaAndPostgresEndToEnd: as a new user would, through the REST
// API of a whole server: one rule sends each device's telemetry to Kafka
// (franz-go's kfake) and to a PostgreSQL table; a consumer reads the
// records with the devices as keys and the table has the rows. A bad
// kafka action is a 400 naming the field.
func TestKafkaAndPostgresEndToEnd(t *testing.T) {
	url := pgtest.DB(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	db, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	if _, err := db.Exec(ctx, `CREATE TABLE readings (device text, temp double precision)`); err != nil {
		t.Fatal(err)
	}
	k, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "readings"))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	brokers, _ := json.Marshal(k.ListenAddrs())

	s := daemontest.Start(t)
	code, out := api(t, s, "POST", "/rules", `{"name":"bad","sql":"SELECT * FROM 'x'","actions":[{"type":"kafka","brokers":["nohost"],"topic":"t"}]}`)
	if code != 400 || !strings.Contains(out, `"field":"actions[0].brokers"`) {
		t.Fatalf("bad kafka action: %d %s", code, out)
	}
	mustAPI(t, s, "POST", "/rules", `{"name":"export","sql":"SELECT temp, topic(2) AS device FROM 'things/+/telemetry'",
		"actions":[{"type":"kafka","brokers":`+string(brokers)+`,"topic":"readings","key":"${device}"},
			{"type":"postgres","url":"`+url+`","table":"readings","columns":{"device":"device","temp":"temp"}}]}`, 201)
	for _, name := range []string{"sensor-1", "sensor-2"} {
		dev := s.V5(t, name, s.Device(t, name))
		for i := range 5 {
			dev.Pub(t, "things/"+name+"/telemetry", 1, false, fmt.Sprintf(`{"temp": %d}`, 20+i))
		}
	}
	daemontest.WaitFor(t, 20*time.Second, func() error {
		var n int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM readings`).Scan(&n); err != nil {
			return err
		}
		if n != 10 {
			return fmt.Errorf("%d rows; want 10", n)
		}
		return nil
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.ListenAddrs()...), kgo.ConsumeTopics("readings"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	keys := map[string]int{}
	for n := 0; n < 10; {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d records; want 10", n)
		}
		for _, r := range f.Records() {
			keys[string(r.Key)]++
			n++
		}
	}
	if keys["sensor-1"] != 5 || keys["sensor-2"] != 5 {
		t.Errorf("record keys = %v; want 5 of each device", keys)
	}
	got := mustAPI(t, s, "GET", "/rules/export", "", 200)
	if !strings.Contains(got, `"type":"postgres"`) {
		t.Errorf("GET /rules/export = %s", got)
	}
}
