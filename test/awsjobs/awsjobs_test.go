// Package awsjobs_test runs the unmodified AWS IoT Device SDK for
// JavaScript v1 jobs client (npm "aws-iot-device-sdk", pinned in
// package-lock.json) against a real Mote server over MQTTS with a device
// certificate issued by the API and Mote's CA: it takes the jobs it is
// notified of and reports them done, over $aws/things/{thing}/jobs/...
//
// It skips when node is not installed or the package is not
// (npm --prefix test/awsjobs ci).
package awsjobs_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/config"
	"github.com/moteiot/mote/internal/daemontest"
)

type result struct {
	OK   bool `json:"ok"`
	Jobs []struct {
		ID           string         `json:"id"`
		Operation    *string        `json:"operation"`
		Document     map[string]any `json:"document"`
		ViaOperation bool           `json:"viaOperation"`
	} `json:"jobs"`
	Errors []string `json:"errors"`
}

func api(t *testing.T, s *daemontest.Server, method, path, body string) string {
	t.Helper()
	req, _ := http.NewRequest(method, s.API+"/api/v1"+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+s.Token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return string(b)
}

func TestAWSIoTDeviceSDKJobs(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed; skipping the aws-iot-device-sdk jobs test")
	}
	if _, err := os.Stat("node_modules/aws-iot-device-sdk/jobs/index.js"); err != nil {
		t.Skip("aws-iot-device-sdk is not installed (npm --prefix test/awsjobs ci); skipping its jobs test")
	}
	s := daemontest.Start(t, func(c *config.Config) { c.JobSchedulerTick = 20 * time.Millisecond })
	s.Thing(t, "sensor-1")
	_, cert := s.ClientCert(t, "sensor-1")
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	host, port, _ := net.SplitHostPort(s.MQTTS)

	api(t, s, "POST", "/jobs", `{"jobId":"reboot-1","targets":{"things":["sensor-1"]},"document":{"operation":"reboot","delay":1}}`)
	api(t, s, "POST", "/jobs", `{"jobId":"install-2","targets":{"things":["sensor-1"]},"document":{"operation":"install","version":"2.0"}}`)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "client.mjs")
	cmd.Env = append(os.Environ(), "THING=sensor-1", "JOBS=2", "HOST="+host, "PORT="+port,
		"KEY_PEM="+string(keyPEM), "CERT_PEM="+string(certPEM), "CA_PEM="+string(s.CACertPEM()))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var r result
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &r); err != nil {
		t.Fatalf("SDK client: %v (exit: %v)\nstdout: %s\nstderr: %s", err, runErr, stdout.String(), stderr.String())
	}
	if !r.OK || runErr != nil || len(r.Jobs) != 2 {
		t.Fatalf("SDK client failed (exit %v): %+v\nstderr: %s", runErr, r, stderr.String())
	}
	if r.Jobs[0].ID != "reboot-1" || r.Jobs[1].ID != "install-2" || !r.Jobs[1].ViaOperation {
		t.Errorf("jobs %+v; want reboot-1 (default handler) then install-2 (its operation's handler)", r.Jobs)
	}
	for _, id := range []string{"reboot-1", "install-2"} {
		daemontest.WaitFor(t, 10*time.Second, func() error {
			if body := api(t, s, "GET", "/jobs/"+id+"/executions", ""); !strings.Contains(body, `"status":"SUCCEEDED"`) {
				return fmt.Errorf("%s executions %s; want SUCCEEDED as the SDK reported", id, body)
			}
			return nil
		})
	}
}
