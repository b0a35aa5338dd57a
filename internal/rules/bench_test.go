package rules

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"
)

// typicalPayload is a ~100-byte telemetry message.
var typicalPayload = []byte(`{"temp": 57.3, "hum": 41.5, "pressure": 1013.2, "battery": 87, "status": "ok", "seq": 184467}`)

func typicalInput() Input {
	return Input{
		Topic:    "things/sensor-0042/telemetry",
		Payload:  typicalPayload,
		ClientID: "sensor-0042",
		Thing:    "sensor-0042",
		Received: time.UnixMilli(1767225600000),
	}
}

// BenchmarkEvalTypical evaluates the typical rule against a ~100-byte JSON
// payload, including decoding the payload (a new Message per evaluation).
func BenchmarkEvalTypical(b *testing.B) {
	s := MustParse("SELECT temp, hum, topic(2) AS device, timestamp() AS ts FROM 'things/+/telemetry' WHERE temp > 50")
	in := typicalInput()
	if out, ok, err := s.Eval(in); !ok || err != nil || len(out) != 4 {
		b.Fatalf("Eval = %v, %v, %v", out, ok, err)
	}
	b.SetBytes(int64(len(in.Payload)))
	b.ReportAllocs()
	for b.Loop() {
		s.Eval(in)
	}
}

// BenchmarkEvalTypicalJSON is BenchmarkEvalTypical plus encoding the output
// as JSON, as an action would.
func BenchmarkEvalTypicalJSON(b *testing.B) {
	s := MustParse("SELECT temp, hum, topic(2) AS device, timestamp() AS ts FROM 'things/+/telemetry' WHERE temp > 50")
	in := typicalInput()
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		out, _, _ := s.Eval(in)
		buf = out.AppendJSON(buf[:0])
	}
}

// BenchmarkEvalStar passes the whole payload through with one more field.
func BenchmarkEvalStar(b *testing.B) {
	s := MustParse("SELECT *, topic(2) AS device FROM 'things/+/telemetry'")
	in := typicalInput()
	b.ReportAllocs()
	for b.Loop() {
		s.Eval(in)
	}
}

// BenchmarkEvalShared evaluates five statements against one message, which
// decodes its payload once.
func BenchmarkEvalShared(b *testing.B) {
	var stmts []*Statement
	for _, sql := range []string{
		"SELECT temp, hum, topic(2) AS device, timestamp() AS ts FROM 'things/+/telemetry' WHERE temp > 50",
		"SELECT * FROM 'things/+/telemetry' WHERE status != 'ok'",
		"SELECT battery FROM 'things/+/telemetry' WHERE battery < 20",
		"SELECT round(temp * 1.8 + 32, 1) AS f FROM 'things/+/telemetry'",
		"SELECT concat(thing(), ':', seq) AS id FROM 'things/#'",
	} {
		stmts = append(stmts, MustParse(sql))
	}
	in := typicalInput()
	b.ReportAllocs()
	for b.Loop() {
		m := NewMessage(in)
		for _, s := range stmts {
			if s.Matches(in.Topic) {
				s.EvalMessage(m)
			}
		}
	}
}

// BenchmarkDecode is the payload decoder alone; BenchmarkDecodeStd is
// encoding/json on the same payload, for comparison.
func BenchmarkDecode(b *testing.B) {
	b.SetBytes(int64(len(typicalPayload)))
	b.ReportAllocs()
	var d decoder
	for b.Loop() {
		var c container
		d.decode(typicalPayload, &c)
	}
}

func BenchmarkDecodeStd(b *testing.B) {
	b.SetBytes(int64(len(typicalPayload)))
	b.ReportAllocs()
	for b.Loop() {
		var v any
		json.Unmarshal(typicalPayload, &v)
	}
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		MustParse("SELECT temp, hum, topic(2) AS device, timestamp() AS ts FROM 'things/+/telemetry' WHERE temp > 50")
	}
}

// BenchmarkWindowAdd is the per-message cost of a windowed rule: decode a
// ~100-byte payload, WHERE, the group key and three aggregates added to a
// 10-hop sliding window of one of 1,000 things (the windows' Close is not
// included; it runs once per hop, off the message path).
func BenchmarkWindowAdd(b *testing.B) {
	s := MustParse("SELECT avg(temp) AS a, max(temp) AS m, count(*) AS n FROM 'things/+/telemetry' WHERE temp > 0 " +
		"GROUP BY thing, SLIDING(5m, 30s)")
	ws := s.NewWindows(0)
	ins := make([]Input, 1000)
	for i := range ins {
		ins[i] = typicalInput()
		ins[i].Thing = "sensor-" + strconv.Itoa(i)
	}
	at := time.UnixMilli(1767225600000)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, _, err := ws.Add(NewMessage(ins[i%len(ins)]), at); err != nil {
			b.Fatal(err)
		}
		i++
	}
	if ws.Len() != min(i, len(ins)) {
		b.Fatalf("Len = %d", ws.Len())
	}
}
