package sim

import "testing"

// TestResolveURL: a signed artifact URL is relative when the server has no
// --artifact-url-base; the simulator resolves it against the server URL.
func TestResolveURL(t *testing.T) {
	for _, c := range []struct{ base, ref, want string }{
		{"http://127.0.0.1:8080", "/api/v1/artifacts/fw/2.0/download?exp=1&sig=x", "http://127.0.0.1:8080/api/v1/artifacts/fw/2.0/download?exp=1&sig=x"},
		{"https://mote.example:8443/", "/api/v1/a", "https://mote.example:8443/api/v1/a"},
		{"", "https://cdn.example/fw.bin", "https://cdn.example/fw.bin"},
		{"http://127.0.0.1:8080", "https://cdn.example/fw.bin", "https://cdn.example/fw.bin"},
	} {
		if got, err := resolveURL(c.base, c.ref); err != nil || got != c.want {
			t.Errorf("resolveURL(%q, %q) = %q, %v; want %q", c.base, c.ref, got, err, c.want)
		}
	}
	for _, c := range []struct{ base, ref string }{{"", "/api/v1/a"}, {"not a url", "/a"}, {"http://x", "%zz"}} {
		if got, err := resolveURL(c.base, c.ref); err == nil {
			t.Errorf("resolveURL(%q, %q) = %q; want an error", c.base, c.ref, got)
		}
	}
}
