package ruleengine

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/moteiot/mote/internal/bus"
	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/mosquittotest"
	"github.com/moteiot/mote/internal/pgtest"
	"github.com/moteiot/mote/internal/store"
	"github.com/moteiot/mote/internal/store/sqlite"
)

// benchAction measures an action's throughput: b.N messages published
// on the bus, until the action has delivered every one (default
// concurrency 4 per destination, queues large enough to drop nothing).
func benchAction(b *testing.B, typ, action string) {
	st, err := sqlite.Open(filepath.Join(b.TempDir(), "mote.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	e := New(Options{Store: st.Rules(), QueueSize: 1_000_000, ActionQueue: 1_000_000, BreakerFailures: 1_000_000})
	if err := e.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	bs := &bus.Local{}
	e.Attach(bs)
	if _, err := e.Create(context.Background(), store.Rule{Name: "bench", Enabled: true, SQL: "SELECT n, topic(2) AS device FROM 'things/+/data'",
		Actions: json.RawMessage("[" + action + "]")}); err != nil {
		b.Fatal(err)
	}
	ok := e.m.action.WithLabelValues("bench", typ, "success")
	payloads := make([][]byte, 100)
	for i := range payloads {
		payloads[i] = fmt.Appendf(nil, `{"n":%d,"temp":21.5}`, i)
	}
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		bs.Publish(core.Message{Topic: "things/t1/data", Thing: "t1", ClientID: "t1", Payload: payloads[i%100], Received: time.Now()})
	}
	deadline := time.Now().Add(2 * time.Minute)
	for int(testutil.ToFloat64(ok)) < b.N {
		if time.Now().After(deadline) {
			b.Fatalf("delivered %v of %d in 2m", testutil.ToFloat64(ok), b.N)
		}
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

func BenchmarkActionKafka(b *testing.B) {
	k := newKafka(b)
	brokers, _ := json.Marshal(k.ListenAddrs())
	benchAction(b, ActionKafka, `{"type":"kafka","brokers":`+string(brokers)+`,"topic":"readings","key":"${device}"}`)
}

func BenchmarkActionNATS(b *testing.B) {
	s := startNATS(b)
	benchAction(b, ActionNATS, `{"type":"nats","url":"`+natsURL(s)+`","subject":"mote.${device}"}`)
}

func BenchmarkActionNATSJetStream(b *testing.B) {
	s := startNATS(b)
	nc, js := jetStream(b, natsURL(s))
	defer nc.Close()
	if _, err := js.CreateStream(context.Background(), streamConfig("BENCH", "mote.>")); err != nil {
		b.Fatal(err)
	}
	benchAction(b, ActionNATS, `{"type":"nats","url":"`+natsURL(s)+`","subject":"mote.${device}","jetstream":true}`)
}

func BenchmarkActionPostgres(b *testing.B) {
	url := pgtest.DB(b)
	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(context.Background(), `CREATE TABLE readings (device text, n integer, temp double precision)`); err != nil {
		b.Fatal(err)
	}
	benchAction(b, ActionPostgres, `{"type":"postgres","url":"`+url+`","table":"readings","columns":{"device":"device","n":"n","temp":"temp"}}`)
}

func BenchmarkActionMQTT(b *testing.B) {
	m := mosquittotest.Start(b, "")
	benchAction(b, ActionMQTT, `{"type":"mqtt","url":"`+m.URL()+`","topic":"out/${device}","qos":1}`)
}

func BenchmarkActionMQTTQoS0(b *testing.B) {
	m := mosquittotest.Start(b, "")
	benchAction(b, ActionMQTT, `{"type":"mqtt","url":"`+m.URL()+`","topic":"out/${device}","qos":0}`)
}
