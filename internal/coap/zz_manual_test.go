package coap_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

func TestZZManual(t *testing.T) {
	if os.Getenv("MANUAL") == "" {
		t.Skip()
	}
	s := start(t)
	secret := s.Device(t, "lamp")
	s.Device(t, "pump")
	if _, err := s.Shadows().Update(ctx(t), "lamp", "", []byte(`{"state":{"reported":{"on":true}}}`)); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile("/tmp/a2manual", []byte(fmt.Sprintf("coap://%s/things/lamp/shadow?token=lamp:%s\n", coapAddr(s), secret)), 0o600)
	_ = strings.Repeat
	time.Sleep(120 * time.Second)
}
