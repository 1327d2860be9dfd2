package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/keyledger/keyledger/internal/browsertest"
	"github.com/keyledger/keyledger/schemas"
)

// The settings page in a real browser against a real server: headless
// Chromium (/usr/bin/chromium, or KEYLEDGER_CHROMIUM) driven through
// chromedp by internal/browsertest. Every tab fails the test when the page
// sends a request to a host other than 127.0.0.1, breaks its
// Content-Security-Policy, or throws. Full-page screenshots of the main
// steps go to KEYLEDGER_UI_SCREENSHOTS (a temporary folder when unset).

const (
	permSelf = "widgets:user-api-keys:manage-self"
	permAll  = "widgets:user-api-keys:manage-all"
	permOrg  = "widgets:api-keys:manage"
)

func TestUI(t *testing.T) {
	// A host application on another origin embeds the page in a frame.
	var hostMu sync.Mutex
	var hostPage string
	host := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hostMu.Lock()
		defer hostMu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, hostPage)
	}))
	t.Cleanup(host.Close)
	s := startServerWith(t, t.TempDir(), func(c *Config) { c.UIFrameAncestors = []string{host.URL} })
	setCatalogue(t, s.url, "projects:read", "projects:write", "tasks:read", "tasks:write")
	browser := browsertest.Start(t, browsertest.Options{TabTimeout: 40 * time.Second, ClipboardOrigin: s.url})
	const org = "org_runway"

	t.Run("UserCreatesCopiesAndRevokesAKey", func(t *testing.T) {
		tok, _ := uiMint(t, s.url, schemas.WidgetTokenRequest{OrganizationID: org, UserID: "user_ada",
			Permissions: []string{permSelf}, UserPermissions: []string{"projects:read", "tasks:read"}})
		tb := browser.Open(t)
		uiPage(tb, s.url, "user", tok)
		if tb.Bool(`location.href.includes('#') || location.href.includes('kwt_')`) || tb.Bool(`localStorage.length || sessionStorage.length || document.cookie`) {
			t.Errorf("the token stayed in the address bar or was stored: %s", tb.Str(`location.href`))
		}
		tb.Shot("01-no-keys")

		tb.Click("#create-btn")
		tb.WaitFor("the create dialog", `document.getElementById('create-dialog').open && document.activeElement.id === 'key-name'`)
		if offered := tb.Str(`[...document.querySelectorAll('#perm-list input[type=checkbox]')].map(b => b.value + (b.labels.length ? '' : '(unlabelled)')).join(',')`); offered != "projects:read,tasks:read" {
			t.Errorf("offered %q, want only the user's own permissions", offered)
		}
		tb.Escape()
		tb.WaitFor("Escape to close the dialog", `!document.getElementById('create-dialog').open && document.activeElement.id === 'create-btn'`)

		tb.Click("#create-btn")
		tb.WaitFor("the create dialog", `document.activeElement.id === 'key-name'`)
		tb.Type("#key-name", "Nightly export")
		tb.Click(`#perm-list input[value="tasks:read"]`)
		tb.Shot("02-create-dialog")
		tb.Click("#create-submit")
		tb.WaitFor("the new key's value", `document.getElementById('secret-dialog').open && document.getElementById('secret-value')`)
		value := tb.Str(`document.getElementById('secret-value').value`)
		if !strings.HasPrefix(value, "sk_live_") {
			t.Fatalf("the dialog shows %q", value)
		}
		tb.Click("#copy-btn")
		tb.WaitFor("the copy", `document.getElementById('copy-status').textContent === 'Copied to the clipboard.'`)
		if got := tb.Str(`navigator.clipboard.readText()`); got != value {
			t.Errorf("the clipboard holds %q, want the key's value", got)
		}
		tb.Shot("03-value-shown-once")
		tb.Click("#secret-done")
		tb.WaitFor("the list with the new key", `!document.getElementById('secret-dialog').open && [...document.querySelectorAll('#key-rows .name')].some(n => n.textContent === 'Nightly export')`)
		if id := tb.Str(uiActiveID); id != "create-btn" {
			t.Errorf("focus after the value dialog: %q, want the Create button", id)
		}
		if strings.Contains(tb.Str(`document.documentElement.outerHTML`), value) || tb.Bool(`document.getElementById('secret-value')`) {
			t.Fatal("the key's value is still in the document after its dialog closed")
		}

		v := validate(t, s.url, value)
		if v.APIKey == nil || v.APIKey.Owner.Type != "user" || v.APIKey.Owner.ID != "user_ada" || !slices.Equal(v.APIKey.Permissions, []string{"tasks:read"}) || v.APIKey.Name != "Nightly export" {
			t.Fatalf("validation of the new key: %+v", v)
		}
		row := `#key-rows tr[data-key-id="` + v.APIKey.ID + `"]`
		if m := tb.Str(`document.querySelector('` + row + ` .masked').textContent`); m != v.APIKey.ObfuscatedValue || !strings.HasSuffix(value, m[len(m)-4:]) {
			t.Errorf("the list shows %q, want the obfuscated value %q", m, v.APIKey.ObfuscatedValue)
		}
		if used := tb.Str(`document.querySelector('` + row + ` .key-used').textContent`); used != "never" {
			t.Errorf("last used %q, want never", used)
		}
		tb.Shot("04-listed-masked")

		tb.Click(row + " .key-actions button")
		tb.WaitFor("the confirmation", `document.getElementById('revoke-dialog').open && document.activeElement.id === 'revoke-cancel'`)
		if d := tb.Str(`document.getElementById('revoke-desc').textContent`); !strings.Contains(d, "“Nightly export”") {
			t.Errorf("the confirmation does not name the key: %q", d)
		}
		tb.Shot("05-confirm-revoke")
		tb.Click("#revoke-confirm")
		tb.WaitFor("the key to leave the list", `!document.getElementById('revoke-dialog').open && !document.querySelector('`+row+`')`)
		if v := validate(t, s.url, value); v.APIKey != nil || v.Reason != schemas.ReasonRevoked {
			t.Errorf("after revoking in the page: %+v", v)
		}
		tb.WaitFor("the refreshed list", uiReady+` && !document.getElementById('empty').hidden`)
		tb.Shot("06-revoked")
	})

	t.Run("ManageAllSeesAndRevokesAnotherUsersKey", func(t *testing.T) {
		bob := createKey(t, s.url, org, schemas.CreateAPIKeyRequest{Name: "Bob's laptop", UserID: "user_bob", Permissions: []string{"projects:read"}})
		row := `#key-rows tr[data-key-id="` + bob.ID + `"]`

		self, _ := uiMint(t, s.url, schemas.WidgetTokenRequest{OrganizationID: org, UserID: "user_ada", Permissions: []string{permSelf}})
		tb := browser.Open(t)
		uiPage(tb, s.url, "user", self)
		if tb.Bool(`document.querySelector('`+row+`')`) || tb.Bool(`!document.querySelector('th.col-owner').hidden`) {
			t.Error("manage-self sees another user's key, or an owner column")
		}

		admin, _ := uiMint(t, s.url, schemas.WidgetTokenRequest{OrganizationID: org, UserID: "user_grace", Permissions: []string{permAll}})
		ta := browser.Open(t)
		uiPage(ta, s.url, "user", admin)
		if owner := ta.Str(`(document.querySelector('` + row + ` .key-owner') || {}).textContent || ''`); owner != "user_bob" {
			t.Fatalf("manage-all: owner of Bob's key %q", owner)
		}
		if ta.Bool(`document.querySelector('th.col-owner').hidden`) || ta.Str(`document.getElementById('title').textContent`) != "User API keys" {
			t.Error("manage-all: no owner column, or not the organization-wide title")
		}
		ta.Shot("01-manage-all")
		ta.Click(row + " .key-actions button")
		ta.WaitFor("the confirmation", `document.getElementById('revoke-dialog').open`)
		if d := ta.Str(`document.getElementById('revoke-desc').textContent`); !strings.Contains(d, "Bob's laptop") || !strings.Contains(d, "user_bob") {
			t.Errorf("the confirmation %q does not name the key and its owner", d)
		}
		ta.Click("#revoke-confirm")
		ta.WaitFor("Bob's key to leave the list", `!document.getElementById('revoke-dialog').open && !document.querySelector('`+row+`')`)
		if v := validate(t, s.url, *bob.Value); v.Reason != schemas.ReasonRevoked {
			t.Errorf("Bob's key after the admin revoked it: %+v", v)
		}
	})

	t.Run("ExpiredAndTamperedTokensEndTheSession", func(t *testing.T) {
		req := schemas.WidgetTokenRequest{OrganizationID: org, UserID: "user_ada", Permissions: []string{permSelf}}
		req.ExpiresIn = 1
		short, shortEnd := uiMint(t, s.url, req)
		req.ExpiresIn = 4
		live, liveEnd := uiMint(t, s.url, req)
		req.ExpiresIn = 0
		fresh, _ := uiMint(t, s.url, req)

		// Open a page while its token is good; it expires under it below.
		tl := browser.Open(t)
		uiPage(tl, s.url, "user", live)
		if time.Now().After(liveEnd) {
			t.Fatal("the machine is too slow for this test: the page took longer to load than its token lives")
		}

		// A tampered token: one character of its signature changed.
		i := len(fresh) - 5
		c := byte('A')
		if fresh[i] == c {
			c = 'B'
		}
		tampered := fresh[:i] + string(c) + fresh[i+1:]
		tt := browser.Open(t)
		tt.Navigate(s.url + "/ui/api-keys?scope=user#token=" + tampered)
		tt.WaitFor("the end of the session", `document.getElementById('app').dataset.state === 'over'`)
		if a := tt.Str(uiAlert); !strings.Contains(a, "session is over") || !strings.Contains(a, "no longer valid") || !tt.Bool(`document.getElementById('create-btn').hidden`) {
			t.Errorf("tampered token: alert %q", a)
		}
		tt.Shot("01-tampered")

		time.Sleep(time.Until(shortEnd) + 500*time.Millisecond) // the token's expiry
		te := browser.Open(t)
		te.Navigate(s.url + "/ui/api-keys?scope=user#token=" + short)
		te.WaitFor("the end of the session", `document.getElementById('app').dataset.state === 'over'`)
		if a := te.Str(uiAlert); !strings.Contains(a, "session is over") || !strings.Contains(a, "expired") || te.Str(`document.getElementById('alert').getAttribute('role')`) != "alert" {
			t.Errorf("expired token: alert %q", a)
		}
		te.Shot("02-expired")

		// The open page: its token expires, the next action ends the session.
		time.Sleep(time.Until(liveEnd) + 200*time.Millisecond) // the token's expiry
		tl.Click("#create-btn")
		tl.Type("#key-name", "Too late")
		tl.Click("#create-submit")
		tl.WaitFor("the end of the session", `document.getElementById('app').dataset.state === 'over'`)
		if a := tl.Str(uiAlert); !strings.Contains(a, "expired") {
			t.Errorf("expired during use: alert %q", a)
		}
		if n := browsertest.Eval[int](tl, `[...document.querySelectorAll('button, input')].filter(c => !c.disabled && !document.getElementById('secret-dialog').contains(c)).length`); n != 0 || tl.Bool(`document.getElementById('create-dialog').open`) {
			t.Errorf("after the session ended: %d controls enabled, dialog open %v", n, tl.Bool(`document.getElementById('create-dialog').open`))
		}
		tl.Shot("03-expired-during-use")
	})

	t.Run("OrganizationKeys", func(t *testing.T) {
		ci := createKey(t, s.url, org, schemas.CreateAPIKeyRequest{Name: "CI pipeline", Permissions: []string{"projects:read", "tasks:write"}})
		tok, _ := uiMint(t, s.url, schemas.WidgetTokenRequest{OrganizationID: org, UserID: "user_grace", Permissions: []string{permOrg}})
		tb := browser.Open(t)
		uiPage(tb, s.url, "organization", tok)
		row := `#key-rows tr[data-key-id="` + ci.ID + `"]`
		if tb.Str(`(document.querySelector('`+row+` .key-owner') || {}).textContent || ''`) != "Organization" || tb.Bool(`document.querySelectorAll('#key-rows tr').length !== 1`) {
			t.Fatalf("organization keys: %s", tb.Str(`document.getElementById('key-rows').textContent`))
		}
		tb.Click("#create-btn")
		tb.WaitFor("the create dialog", `document.activeElement.id === 'key-name'`)
		if n := browsertest.Eval[int](tb, `document.querySelectorAll('#perm-list input').length`); n != 4 {
			t.Errorf("an organization key is offered %d permissions, want the whole catalogue", n)
		}
		tb.Type("#key-name", "Deploy bot")
		tb.Click(`#perm-list input[value="projects:read"]`)
		tb.Click(`#perm-list input[value="projects:write"]`)
		tb.Click("#create-submit")
		tb.WaitFor("the new key's value", `document.getElementById('secret-value')`)
		value := tb.Str(`document.getElementById('secret-value').value`)
		tb.Shot("01-organization-value")
		tb.Click("#secret-done")
		tb.WaitFor("the list with the new key", `document.querySelectorAll('#key-rows tr').length === 2 && `+uiReady)
		v := validate(t, s.url, value)
		if v.APIKey == nil || v.APIKey.Owner.Type != "organization" || v.APIKey.Owner.ID != org || v.APIKey.UserID != nil || !slices.Equal(v.APIKey.Permissions, []string{"projects:read", "projects:write"}) {
			t.Fatalf("the organization key: %+v", v)
		}
		if strings.Contains(tb.Str(`document.documentElement.outerHTML`), value) {
			t.Error("the value is still in the document")
		}
		tb.Shot("02-organization-keys")

		self, _ := uiMint(t, s.url, schemas.WidgetTokenRequest{OrganizationID: org, UserID: "user_ada", Permissions: []string{permSelf}})
		tn := browser.Open(t)
		tn.Navigate(s.url + "/ui/api-keys?scope=organization#token=" + self)
		tn.WaitFor("the denial", `document.getElementById('app').dataset.state === 'error'`)
		if a := tn.Str(uiAlert); !strings.Contains(a, "may not manage this organization’s API keys") || !tn.Bool(`document.getElementById('create-btn').hidden && document.getElementById('keys').hidden`) {
			t.Errorf("without widgets:api-keys:manage: %q", a)
		}
		tn.Shot("03-organization-denied")
	})

	t.Run("NarrowScreen", func(t *testing.T) {
		createKey(t, s.url, org, schemas.CreateAPIKeyRequest{Name: "A key with a rather long name for a phone screen", UserID: "user_grace",
			Permissions: []string{"projects:read", "projects:write", "tasks:read", "tasks:write"}})
		createKey(t, s.url, org, schemas.CreateAPIKeyRequest{Name: "Sync job", UserID: "user_01E4ZCR3C56J083X43JQXF3JK5", Permissions: []string{"tasks:read"}})
		tok, _ := uiMint(t, s.url, schemas.WidgetTokenRequest{OrganizationID: org, UserID: "user_grace", Permissions: []string{permAll}})
		tb := browser.Open(t)
		tb.Do(chromedp.EmulateViewport(320, 640, chromedp.EmulateMobile, chromedp.EmulateTouch))
		uiPage(tb, s.url, "user", tok)
		tb.CheckWidth(320)
		if tb.Str(`getComputedStyle(document.querySelector('#key-rows tr')).display`) != "block" {
			t.Error("at 320px the keys are not cards")
		}
		tb.Shot("01-list-320")
		tb.Click("#create-btn")
		tb.WaitFor("the create dialog", `document.activeElement.id === 'key-name'`)
		tb.CheckWidth(320)
		tb.Type("#key-name", "Phone")
		tb.Click(`#perm-list input[value="tasks:read"]`)
		tb.Shot("02-create-320")
		tb.Click("#create-submit")
		tb.WaitFor("the new key's value", `document.getElementById('secret-value')`)
		tb.CheckWidth(320)
		tb.Shot("03-value-320")
		tb.Click("#secret-done")
		tb.WaitFor("the list", `!document.getElementById('secret-dialog').open && `+uiReady)
		tb.CheckWidth(320)
	})

	t.Run("EmbeddedInAFrame", func(t *testing.T) {
		createKey(t, s.url, org, schemas.CreateAPIKeyRequest{Name: "Ada's script", UserID: "user_ada", Permissions: []string{"projects:read"}})
		tok, _ := uiMint(t, s.url, schemas.WidgetTokenRequest{OrganizationID: org, UserID: "user_ada", Permissions: []string{permSelf}})
		hostMu.Lock()
		hostPage = `<!doctype html><html lang="en"><title>Runway settings</title><h1>Settings</h1>` +
			`<iframe src="` + s.url + `/ui/api-keys?scope=user#token=` + tok + `" title="API keys" allow="clipboard-write" width="900" height="560"></iframe></html>`
		hostMu.Unlock()
		tb := browser.Open(t)
		tb.Navigate(host.URL)
		frames, err := chromedp.Run(tb.Context(), chromedp.Nodes(chromedp.CSS("iframe"), chromedp.NodeReady))
		if err != nil || len(frames) != 1 {
			t.Fatalf("the host page's frame: %v, %d frames", err, len(frames))
		}
		in := chromedp.FromNode(frames[0])
		if err := chromedp.Do(tb.Context(), chromedp.WaitVisible(chromedp.CSS(`#key-rows tr`), in)); err != nil {
			t.Fatalf("the framed page lists no key: %v", err)
		}
		names, err := chromedp.Run(tb.Context(), chromedp.Text(chromedp.CSS(`#key-rows`), in))
		if err != nil || !strings.Contains(names, "Ada's script") {
			t.Errorf("the framed page lists %q (%v)", names, err)
		}
		if err := chromedp.Do(tb.Context(), chromedp.Click(chromedp.CSS("#create-btn"), in, chromedp.NodeVisible),
			chromedp.WaitVisible(chromedp.CSS("#key-name"), in)); err != nil {
			t.Fatalf("the framed page's create dialog: %v", err)
		}
		tb.Shot("01-host-page-with-frame")
	})

	t.Run("TheGuardsWork", func(t *testing.T) {
		// The checks every tab makes are not vacuous: requests were seen,
		// all to the server, and an inline script is reported as a CSP
		// violation.
		tok, _ := uiMint(t, s.url, schemas.WidgetTokenRequest{OrganizationID: org, UserID: "user_ada", Permissions: []string{permSelf}})
		tb := browser.Open(t)
		uiPage(tb, s.url, "user", tok)
		tb.Expect("script-src")
		tb.Do(chromedp.Evaluate[chromedp.Void](`{ const s = document.createElement('script'); s.textContent = 'document.title = "injected"'; document.body.appendChild(s); }`))
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if tb.Expected() > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("an inline script was not reported as a CSP violation")
			}
		}
		if tb.Str(`document.title`) == "injected" {
			t.Error("the CSP let an inline script run")
		}
		u, _ := url.Parse(s.url)
		h, _ := url.Parse(host.URL)
		if hosts := browser.Hosts(); len(hosts) != 2 || !hosts[u.Host] || !hosts[h.Host] {
			t.Errorf("hosts seen by all tabs: %v, want only %s and the host page's %s", hosts, u.Host, h.Host)
		}
	})
}

// uiMint mints a widget token with the admin key.
func uiMint(t *testing.T, base string, req schemas.WidgetTokenRequest) (string, time.Time) {
	t.Helper()
	var tok schemas.WidgetToken
	if st, raw := call(t, "POST", base+"/widgets/token", req, &tok); st != 201 || !strings.HasPrefix(tok.Token, schemas.WidgetTokenPrefix) {
		t.Fatalf("mint a widget token: %d %s", st, raw)
	}
	return tok.Token, tok.ExpiresAt
}

const (
	uiReady    = `document.getElementById('app').dataset.state === 'ready'`
	uiAlert    = `document.getElementById('alert').textContent`
	uiActiveID = `document.activeElement ? document.activeElement.id : ''`
)

// uiPage opens the settings page with a token and waits for its list.
func uiPage(tb *browsertest.Tab, base, scope, token string) {
	tb.T().Helper()
	tb.Navigate(base + "/ui/api-keys?scope=" + scope + "#token=" + token)
	tb.WaitFor("the list", uiReady)
}
