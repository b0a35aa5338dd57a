package artifacts

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/moteiot/mote/internal/core"
	"github.com/moteiot/mote/internal/keyfile"
)

// URLKeySize is the size of the key that signs download URLs.
const URLKeySize = 32

// URLSigner signs and verifies the short-lived download URLs of
// artifacts: HMAC-SHA256 over "mote-artifact-url-v1", the name, the
// version and the expiry (Unix seconds), base64url without padding.
type URLSigner struct {
	key []byte
	now func() time.Time
}

// NewURLSigner returns a signer with key (URLKeySize bytes).
func NewURLSigner(key []byte) (*URLSigner, error) {
	if len(key) != URLKeySize {
		return nil, fmt.Errorf("artifacts: URL key is %d bytes; want %d", len(key), URLKeySize)
	}
	return &URLSigner{key: key, now: time.Now}, nil
}

// LoadOrCreateURLKey reads the URL signing key at path, creating it (mode
// 0600) with random bytes the first time.
func LoadOrCreateURLKey(path string) ([]byte, error) {
	k, err := keyfile.LoadOrCreate(path, URLKeySize)
	if err != nil {
		return nil, fmt.Errorf("artifacts: URL key: %w", err)
	}
	return k, nil
}

func (s *URLSigner) mac(name, version string, exp int64) []byte {
	m := hmac.New(sha256.New, s.key)
	fmt.Fprintf(m, "mote-artifact-url-v1\n%s\n%s\n%d", name, version, exp)
	return m.Sum(nil)
}

// Sign returns the exp and sig query values of a URL for name@version
// valid until now+ttl.
func (s *URLSigner) Sign(name, version string, ttl time.Duration) (exp, sig string) {
	e := s.now().Add(ttl).Unix()
	return strconv.FormatInt(e, 10), base64.RawURLEncoding.EncodeToString(s.mac(name, version, e))
}

// MaxSigLen bounds the sig value Verify looks at.
const MaxSigLen = 64

// Verify checks the exp and sig query values of a download URL: a
// malformed, forged or expired one is core.KindForbidden (expired ones
// say so).
func (s *URLSigner) Verify(name, version, exp, sig string) error {
	if exp == "" || sig == "" {
		return core.Errorf(core.KindForbidden, "signed URL: exp and sig are required")
	}
	if len(exp) > 20 || len(sig) > MaxSigLen || strings.ContainsAny(name+version, "\n") {
		return core.Errorf(core.KindForbidden, "signed URL: malformed")
	}
	e, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || e <= 0 {
		return core.Errorf(core.KindForbidden, "signed URL: malformed exp")
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.mac(name, version, e)) {
		return core.Errorf(core.KindForbidden, "signed URL: bad signature")
	}
	if s.now().Unix() >= e {
		return core.Errorf(core.KindForbidden, "signed URL: expired at %s", time.Unix(e, 0).UTC().Format(time.RFC3339))
	}
	return nil
}
