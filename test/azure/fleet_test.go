package azure_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/moteiot/mote/internal/daemontest"
	"github.com/moteiot/mote/internal/pgtest"
)

// TestMixedFleet, as a new user would: a CoAP device (libcoap's
// coap-client over DTLS with its certificate) and a device running the
// unmodified Azure IoT device SDK are in one fleet. Their telemetry is in
// the same fleet-wide telemetry query the console's charts read, and one
// rule sends both to Kafka (franz-go's kfake) and to a PostgreSQL table,
// with the Azure message's application property read as
// properties.alert.
func TestMixedFleet(t *testing.T) {
	node := azureSDK(t)
	coapClient := ""
	for _, name := range []string{"coap-client-openssl", "coap-client-gnutls"} {
		if p, err := exec.LookPath(name); err == nil {
			coapClient = p
			break
		}
	}
	if coapClient == "" {
		t.Skip("coap-client-openssl (Debian libcoap3-bin) is not installed; .ci/run installs it")
	}
	pgURL := pgtest.DB(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	db, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	if _, err := db.Exec(ctx, `CREATE TABLE readings (device text, temp double precision, alert text)`); err != nil {
		t.Fatal(err)
	}
	k, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "readings"))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	brokers, _ := json.Marshal(k.ListenAddrs())

	s := daemontest.Start(t)
	rule := `{"name":"export","sql":"SELECT temp, topic(2) AS device, properties.alert AS alert FROM 'things/+/telemetry'",
		"actions":[{"type":"kafka","brokers":` + string(brokers) + `,"topic":"readings","key":"${device}"},
			{"type":"postgres","url":"` + pgURL + `","table":"readings","columns":{"device":"device","temp":"temp","alert":"alert"}}]}`
	var problem struct{ Detail string }
	if code := api(t, s, "POST", "/rules", rule, &problem); code != 201 {
		t.Fatalf("create the rule = %d %s", code, problem.Detail)
	}

	// The Azure SDK device.
	s.Thing(t, "az-1")
	nc, err := s.Registry().CreateSymmetricKey(ctx, "az-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, s.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	conn := "HostName=localhost;DeviceId=az-1;SharedAccessKey=" + nc.Key + ";GatewayHostName=" + strings.Replace(s.MQTTS, "127.0.0.1", "localhost", 1)
	cmd := exec.CommandContext(ctx, node, "telemetry.js")
	cmd.Env = append(os.Environ(), "MOTE_CONNECTION_STRING="+conn, "MOTE_CA_FILE="+ca, "MOTE_COUNT=3")
	out, err := cmd.Output()
	sent := false
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		var l line
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Step == "sent" {
			sent = true
		}
	}
	if err != nil || !sent {
		t.Fatalf("Azure SDK telemetry: %v\n%s", err, out)
	}

	// The CoAP device, over DTLS with its certificate.
	s.Thing(t, "coap-1")
	cert, err := s.Registry().IssueCertificate(ctx, "coap-1", 0)
	if err != nil {
		t.Fatal(err)
	}
	for name, pem := range map[string]string{"cert.pem": cert.CertPEM, "key.pem": cert.PrivateKey} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(pem), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, port, _ := strings.Cut(s.Addrs().CoAPS, ":")
	for i := range 3 {
		out, err := exec.CommandContext(ctx, coapClient, "-c", filepath.Join(dir, "cert.pem"), "-j", filepath.Join(dir, "key.pem"), "-C", ca,
			"-m", "post", "-t", "json", "-e", fmt.Sprintf(`{"temp": %d}`, 10+i), "coaps://localhost:"+port+"/things/coap-1/telemetry").CombinedOutput()
		if err != nil {
			t.Fatalf("coap-client: %v\n%s", err, out)
		}
	}

	// One chart: both devices in the fleet-wide telemetry query.
	daemontest.WaitFor(t, 20*time.Second, func() error {
		var page struct {
			Items []struct {
				Thing string
				Value float64
			}
		}
		api(t, s, "GET", "/telemetry?things=az-1,coap-1&keys=temp", "", &page)
		n := map[string]int{}
		for _, it := range page.Items {
			n[it.Thing]++
		}
		if n["az-1"] != 3 || n["coap-1"] != 3 {
			return fmt.Errorf("telemetry points per thing = %v; want 3 each", n)
		}
		return nil
	})
	// PostgreSQL: every message, with the Azure property for az-1.
	daemontest.WaitFor(t, 20*time.Second, func() error {
		rows, err := db.Query(ctx, `SELECT device, count(*), count(alert), min(alert) FROM readings GROUP BY device ORDER BY device`)
		if err != nil {
			return err
		}
		got := []string{}
		for rows.Next() {
			var dev string
			var n, alerts int
			var alert *string
			if err := rows.Scan(&dev, &n, &alerts, &alert); err != nil {
				return err
			}
			a := "<null>"
			if alert != nil {
				a = *alert
			}
			got = append(got, fmt.Sprintf("%s:%d:%d:%s", dev, n, alerts, a))
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if want := "az-1:3:3:high coap-1:3:0:<null>"; strings.Join(got, " ") != want {
			return fmt.Errorf("readings = %v; want %s", got, want)
		}
		return nil
	})
	// Kafka: six records keyed by device.
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.ListenAddrs()...), kgo.ConsumeTopics("readings"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	keys := map[string]int{}
	alerts := 0
	for n := 0; n < 6; {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d records; want 6", n)
		}
		for _, r := range f.Records() {
			keys[string(r.Key)]++
			if strings.Contains(string(r.Value), `"alert":"high"`) {
				alerts++
			}
			n++
		}
	}
	if keys["az-1"] != 3 || keys["coap-1"] != 3 || alerts != 3 {
		t.Errorf("Kafka record keys = %v with %d alerts; want 3 of each device and the 3 Azure alerts", keys, alerts)
	}
}
