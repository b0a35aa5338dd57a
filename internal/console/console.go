// Package console serves Mote's web console: the single-page application
// built from web/ (TypeScript, Vite, uPlot) into dist/app and embedded in
// the binary. Hashed assets under /assets/ are cached for a year; every
// other path that is not a file is a client route and gets index.html.
// A binary built without the UI step serves a page that says how to build
// it, so `go build` alone still works.
package console

import (
	"bytes"
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed all:dist
var dist embed.FS

// Built reports whether the console's assets are in the binary.
func Built() bool {
	_, err := fs.Stat(dist, "dist/app/index.html")
	return err == nil
}

// Handler serves the console.
func Handler() http.Handler {
	app, err := fs.Sub(dist, "dist/app")
	if err != nil || !Built() {
		return http.HandlerFunc(notBuilt)
	}
	index, err := fs.ReadFile(app, "index.html")
	if err != nil {
		return http.HandlerFunc(notBuilt)
	}
	return &handler{app: app, index: index, files: http.FileServerFS(app)}
}

type handler struct {
	app   fs.FS
	index []byte
	files http.Handler
}

// securityHeaders are sent with every console response.
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	securityHeaders(w.Header())
	p := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	if p != "" && p != "index.html" {
		if st, err := fs.Stat(h.app, p); err == nil && !st.IsDir() {
			if strings.HasPrefix(p, "assets/") {
				w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
			} else {
				w.Header().Set("Cache-Control", "no-cache")
			}
			h.files.ServeHTTP(w, r)
			return
		}
		// A missing file (it has an extension) is a 404; anything else is
		// a client route of the application.
		if path.Ext(p) != "" {
			http.NotFound(w, r)
			return
		}
	}
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	http.ServeContent(w, r, "index.html", time.Time{}, bytes.NewReader(h.index))
}

const notBuiltPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Mote</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:44rem;margin:3rem auto;padding:0 1rem;color:#1b2330}code,pre{background:#eef1f5;border-radius:4px;padding:.1em .3em}pre{padding:.8em}</style>
</head><body>
<h1>Mote is running</h1>
<p>This binary was built without the web console. To include it, build the
console first (Node.js 20 and npm), then the binary:</p>
<pre>npm --prefix web ci &amp;&amp; npm --prefix web run build
go build -o mote ./cmd/mote</pre>
<p>Meanwhile everything works without it: the REST API at
<a href="/api/v1/openapi.json"><code>/api/v1</code></a>, MQTT over WebSocket at
<code>/mqtt</code>, metrics at <a href="/metrics"><code>/metrics</code></a>,
and the <code>mote</code> command line.</p>
</body></html>
`

func notBuilt(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	securityHeaders(w.Header())
	if p := path.Clean("/" + r.URL.Path); p != "/" && path.Ext(p) != "" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(notBuiltPage))
}
