package artifacts

import (
	"crypto/hmac"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moteiot/mote/internal/core"
)

func testSigner(t testing.TB) *URLSigner {
	s, err := NewURLSigner([]byte(strings.Repeat("k", URLKeySize)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSignedURL(t *testing.T) {
	s := testSigner(t)
	now := time.Unix(1_700_000_000, 0)
	s.now = func() time.Time { return now }
	exp, sig := s.Sign("fw", "1.0", time.Minute)
	if err := s.Verify("fw", "1.0", exp, sig); err != nil {
		t.Fatalf("Verify fresh: %v", err)
	}
	cases := map[string][4]string{
		"other name":    {"fw2", "1.0", exp, sig},
		"other version": {"fw", "1.1", exp, sig},
		"longer expiry": {"fw", "1.0", "9999999999", sig},
		"flipped sig":   {"fw", "1.0", exp, "A" + sig[1:]},
		"empty sig":     {"fw", "1.0", exp, ""},
		"junk exp":      {"fw", "1.0", "12a", sig},
		"long sig":      {"fw", "1.0", exp, strings.Repeat("A", 500)},
	}
	for name, c := range cases {
		if err := s.Verify(c[0], c[1], c[2], c[3]); core.KindOf(err) != core.KindForbidden {
			t.Errorf("%s: Verify = %v; want forbidden", name, err)
		}
	}
	now = now.Add(time.Minute)
	if err := s.Verify("fw", "1.0", exp, sig); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("Verify after expiry = %v; want expired", err)
	}
}

// FuzzVerifyURL: no input panics, and nothing but the signer's own
// output verifies.
func FuzzVerifyURL(f *testing.F) {
	s := testSigner(f)
	// A fixed clock: the seeds' signatures are the same in every run.
	now := time.Unix(1_700_000_000, 0)
	s.now = func() time.Time { return now }
	exp, sig := s.Sign("fw", "1", time.Hour)
	f.Add("fw", "1", exp, sig)
	f.Add("fw", "1", "0", sig)
	f.Add("", "", "", "")
	f.Add("fw", "1", "-1", "====")
	f.Add("fw\n1", "", exp, sig)
	f.Fuzz(func(t *testing.T, name, version, e, g string) {
		if s.Verify(name, version, e, g) != nil {
			return
		}
		// Only what the signer made verifies: the signed name and
		// version, and the signer's MAC over the expiry given (which may
		// be spelled differently, "+" or leading zeros, as long as it is
		// the same time). A signature the signer made for another expiry
		// — the corpus keeps those from earlier runs — is still its own.
		n, _ := strconv.ParseInt(e, 10, 64)
		mac, err := base64.RawURLEncoding.DecodeString(g)
		if name != "fw" || version != "1" || err != nil || !hmac.Equal(mac, s.mac("fw", "1", n)) {
			t.Fatalf("Verify(%q, %q, %q, %q) accepted a URL the signer did not make", name, version, e, g)
		}
	})
}
