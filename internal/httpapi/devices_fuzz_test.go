package httpapi

import (
	"encoding/base64"
	"testing"

	"github.com/moteiot/mote/internal/core"
)

func TestDeviceCredentials(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		header, thing, secret string
		ok                    bool
	}{
		{"Basic " + b64("lamp:s3cret"), "lamp", "s3cret", true},
		{"basic " + b64("lamp:a:b"), "lamp", "a:b", true},
		{"Bearer s3cret", "path-thing", "s3cret", true},
		{"  bearer   s3cret  ", "path-thing", "s3cret", true},
		{"", "", "", false},
		{"Basic", "", "", false},
		{"Basic !!", "", "", false},
		{"Basic " + b64("lamp"), "", "", false},
		{"Basic " + b64(":secret"), "", "", false},
		{"Basic " + b64("lamp:"), "", "", false},
		{"Bearer ", "", "", false},
		{"Digest x", "", "", false},
	} {
		thing, secret, err := deviceCredentials(tc.header, "path-thing")
		if (err == nil) != tc.ok || thing != tc.thing || secret != tc.secret {
			t.Errorf("deviceCredentials(%q) = %q, %q, %v; want %q, %q, ok=%v", tc.header, thing, secret, err, tc.thing, tc.secret, tc.ok)
		}
		if err != nil && core.KindOf(err) != core.KindUnauthorized {
			t.Errorf("deviceCredentials(%q) error kind %v; want unauthorized", tc.header, core.KindOf(err))
		}
	}
}

// FuzzDeviceCredentials: any Authorization header gives either a thing
// and a non-empty secret or an unauthorized error, never a panic.
func FuzzDeviceCredentials(f *testing.F) {
	for _, s := range []string{
		"Basic bGFtcDpzM2NyZXQ=", "Bearer abc", "Basic", "Basic ====", "bearer\t x", "Basic Og==", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		thing, secret, err := deviceCredentials(h, "p")
		if err != nil {
			if core.KindOf(err) != core.KindUnauthorized {
				t.Fatalf("deviceCredentials(%q): error of kind %v", h, core.KindOf(err))
			}
			return
		}
		if thing == "" || secret == "" {
			t.Fatalf("deviceCredentials(%q) = %q, %q with no error", h, thing, secret)
		}
	})
}
