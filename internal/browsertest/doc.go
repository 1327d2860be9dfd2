// Package browsertest drives Debian's headless Chromium through chromedp
// for the tests of keyledger's settings page (web/page_test.go against a
// fake of the API, cmd/keyledger/ui_test.go against the real server).
//
// Start starts one browser per test with a fresh profile; Open opens one
// tab in it per subtest. Every tab guards its page: its test fails when
// the page sends a request to another host than 127.0.0.1, breaks its
// Content-Security-Policy, or throws an uncaught exception. The tab's
// methods click, type, press keys, evaluate JavaScript and wait for
// conditions by polling (chromedp.Poll compiles its predicate with new
// Function, which the page's CSP refuses). Screenshots go to the folder
// KEYLEDGER_UI_SCREENSHOTS names, or to a temporary folder when it is
// unset.
//
// The browser is KEYLEDGER_CHROMIUM, /usr/bin/chromium, or a Chromium or
// Chrome on PATH. Tests fail, never skip, without one: scripts/test.sh
// installs Debian's chromium.
package browsertest
