// Package web holds keyledger's settings page: a self-contained page
// (index.html, app.js, app.css under static/) that lists, creates and
// revokes API keys for one user of one organization, embedded in the
// binary and served by package api under /ui:
//
//	GET /ui/api-keys?scope=user|organization   index.html
//	GET /ui/assets/<file>                      the other files of static/
//
// A host application embeds the page in an iframe and hands it a widget
// token (minted by the admin key through POST /widgets/token) in the URL
// fragment, which no server ever sees:
//
//	<iframe src="https://keyledger.example/ui/api-keys?scope=user#token=kwt_…"
//	        title="API keys" allow="clipboard-write"></iframe>
//
// The page reads the token once, keeps it in memory only (never in web
// storage or cookies), removes it from the address bar, and sends it as a
// bearer token on every call to /widgets/session and the API key routes.
// The server only answers what the token's manage permissions allow; the
// page only offers what the session says it may do. A 401 ends the
// session: the page says so and disables its controls. The host may hand
// over a fresh token by navigating the iframe to the same address with a
// new #token=… fragment.
//
// The files load nothing from anywhere else and run under the strict
// Content-Security-Policy the server sets on every /ui answer: no inline
// script or style, no eval, no external fonts or images. A new key's value
// is shown once, in a dialog, and removed from the document when that
// dialog closes; the list only ever shows the obfuscated value.
package web
