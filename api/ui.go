package api

import (
	"io/fs"
	"net/http"
	"path"
	"strings"
)

// The settings page: static files, no credential of their own (the page
// carries its widget token in the URL fragment, which never reaches a
// server), under a CSP that allows nothing but this origin.

func (s *Server) csp() string {
	ancestors := "'none'"
	if len(s.cfg.UIFrameAncestors) > 0 {
		ancestors = strings.Join(s.cfg.UIFrameAncestors, " ")
	}
	return "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
		"form-action 'none'; base-uri 'none'; frame-ancestors " + ancestors
}

func (s *Server) serveUIFile(w http.ResponseWriter, name string) {
	if s.cfg.UI == nil {
		writeError(w, http.StatusNotFound, "route_not_found", "the settings page is not served here")
		return
	}
	b, err := fs.ReadFile(s.cfg.UI, name)
	if err != nil {
		writeError(w, http.StatusNotFound, "route_not_found", "no such file")
		return
	}
	h := w.Header()
	// A fixed table: mime.TypeByExtension reads the host's mime.types.
	ct, ok := uiTypes[path.Ext(name)]
	if !ok {
		ct = "application/octet-stream"
	}
	h.Set("Content-Type", ct)
	h.Set("Content-Security-Policy", s.csp())
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	if len(s.cfg.UIFrameAncestors) == 0 {
		h.Set("X-Frame-Options", "DENY")
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

var uiTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
}

func (s *Server) uiPage(w http.ResponseWriter, _ *http.Request) { s.serveUIFile(w, "index.html") }

func (s *Server) uiAsset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	if name == "index.html" || !fs.ValidPath(name) || strings.HasPrefix(name, ".") {
		writeError(w, http.StatusNotFound, "route_not_found", "no such file")
		return
	}
	s.serveUIFile(w, name)
}
