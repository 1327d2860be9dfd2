package web

import "embed"

// Files holds the settings page: static/index.html, static/app.js and
// static/app.css.
//
//go:embed static
var Files embed.FS
