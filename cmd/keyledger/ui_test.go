package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/keyledger/keyledger/schemas"
)

// The settings page in a real browser against a real server: headless
// Chromium (/usr/bin/chromium, or KEYLEDGER_CHROMIUM) driven through
// chromedp. Every tab fails the test when the page sends a request to a
// host other than 127.0.0.1, breaks its Content-Security-Policy, or throws.
// Full-page screenshots of the main steps go to KEYLEDGER_UI_SCREENSHOTS
// (a temporary folder when unset).

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
	b := uiStartBrowser(t, s.url)
	const org = "org_runway"

	t.Run("UserCreatesCopiesAndRevokesAKey", func(t *testing.T) {
		tok, _ := uiMint(t, s.url, schemas.WidgetTokenRequest{OrganizationID: org, UserID: "user_ada",
			Permissions: []string{permSelf}, UserPermissions: []string{"projects:read", "tasks:read"}})
		tb := b.open(t)
		tb.page(s.url, "user", tok)
		if tb.bool(`location.href.includes('#') || location.href.includes('kwt_')`) || tb.bool(`localStorage.length || sessionStorage.length || document.cookie`) {
			t.Errorf("the token stayed in the address bar or was stored: %s", tb.str(`location.href`))
		}
		tb.shot("01-no-keys")

		tb.click("#create-btn")
		tb.waitFor("the create dialog", `document.getElementById('create-dialog').open && document.activeElement.id === 'key-name'`)
		if offered := tb.str(`[...document.querySelectorAll('#perm-list input[type=checkbox]')].map(b => b.value + (b.labels.length ? '' : '(unlabelled)')).join(',')`); offered != "projects:read,tasks:read" {
			t.Errorf("offered %q, want only the user's own permissions", offered)
		}
		tb.escape()
		tb.waitFor("Escape to close the dialog", `!document.getElementById('create-dialog').open && document.activeElement.id === 'create-btn'`)

		tb.click("#create-btn")
		tb.waitFor("the create dialog", `document.activeElement.id === 'key-name'`)
		tb.typeInto("#key-name", "Nightly export")
		tb.click(`#perm-list input[value="tasks:read"]`)
		tb.shot("02-create-dialog")
		tb.click("#create-submit")
		tb.waitFor("the new key's value", `document.getElementById('secret-dialog').open && document.getElementById('secret-value')`)
		value := tb.str(`document.getElementById('secret-value').value`)
		if !strings.HasPrefix(value, "sk_live_") {
			t.Fatalf("the dialog shows %q", value)
		}
		tb.click("#copy-btn")
		tb.waitFor("the copy", `document.getElementById('copy-status').textContent === 'Copied to the clipboard.'`)
		if got := tb.str(`navigator.clipboard.readText()`); got != value {
			t.Errorf("the clipboard holds %q, want the key's value", got)
		}
		tb.shot("03-value-shown-once")
		tb.click("#secret-done")
		tb.waitFor("the list with the new key", `!document.getElementById('secret-dialog').open && [...document.querySelectorAll('#key-rows .name')].some(n => n.textContent === 'Nightly export')`)
		if id := tb.str(uiActiveID); id != "create-btn" {
			t.Errorf("focus after the value dialog: %q, want the Create button", id)
		}
		if strings.Contains(tb.str(`document.documentElement.outerHTML`), value) || tb.bool(`document.getElementById('secret-value')`) {
			t.Fatal("the key's value is still in the document after its dialog closed")
		}

		v := validate(t, s.url, value)
		if v.APIKey == nil || v.APIKey.Owner.Type != "user" || v.APIKey.Owner.ID != "user_ada" || !slices.Equal(v.APIKey.Permissions, []string{"tasks:read"}) || v.APIKey.Name != "Nightly export" {
			t.Fatalf("validation of the new key: %+v", v)
		}
		row := `#key-rows tr[data-key-id="` + v.APIKey.ID + `"]`
		if m := tb.str(`document.querySelector('` + row + ` .masked').textContent`); m != v.APIKey.ObfuscatedValue || !strings.HasSuffix(value, m[len(m)-4:]) {
			t.Errorf("the list shows %q, want the obfuscated value %q", m, v.APIKey.ObfuscatedValue)
		}
		if used := tb.str(`document.querySelector('` + row + ` .key-used').textContent`); used != "never" {
			t.Errorf("last used %q, want never", used)
		}
		tb.shot("04-listed-masked")

		tb.click(row + " .key-actions button")
		tb.waitFor("the confirmation", `document.getElementById('revoke-dialog').open && document.activeElement.id === 'revoke-cancel'`)
		if d := tb.str(`document.getElementById('revoke-desc').textContent`); !strings.Contains(d, "“Nightly export”") {
			t.Errorf("the confirmation does not name the key: %q", d)
		}
		tb.shot("05-confirm-revoke")
		tb.click("#revoke-confirm")
		tb.waitFor("the key to leave the list", `!document.getElementById('revoke-dialog').open && !document.querySelector('`+row+`')`)
		if v := validate(t, s.url, value); v.APIKey != nil || v.Reason != schemas.ReasonRevoked {
			t.Errorf("after revoking in the page: %+v", v)
		}
		tb.waitFor("the refreshed list", uiReady+` && !document.getElementById('empty').hidden`)
		tb.shot("06-revoked")
	})

	t.Run("ManageAllSeesAndRevokesAnotherUsersKey", func(t *testing.T) {
		bob := createKey(t, s.url, org, schemas.CreateAPIKeyRequest{Name: "Bob's laptop", UserID: "user_bob", Permissions: []string{"projects:read"}})
		row := `#key-rows tr[data-key-id="` + bob.ID + `"]`

		self, _ := uiMint(t, s.url, schemas.WidgetTokenRequest{OrganizationID: org, UserID: "user_ada", Permissions: []string{permSelf}})
		tb := b.open(t)
		tb.page(s.url, "user", self)
		if tb.bool(`document.querySelector('`+row+`')`) || tb.bool(`!document.querySelector('th.col-owner').hidden`) {
			t.Error("manage-self sees another user's key, or an owner column")
		}

		admin, _ := uiMint(t, s.url, schemas.WidgetTokenRequest{OrganizationID: org, UserID: "user_grace", Permissions: []string{permAll}})
		ta := b.open(t)
		ta.page(s.url, "user", admin)
		if owner := ta.str(`(document.querySelector('` + row + ` .key-owner') || {}).textContent || ''`); owner != "user_bob" {
			t.Fatalf("manage-all: owner of Bob's key %q", owner)
		}
		if ta.bool(`document.querySelector('th.col-owner').hidden`) || ta.str(`document.getElementById('title').textContent`) != "User API keys" {
			t.Error("manage-all: no owner column, or not the organization-wide title")
		}
		ta.shot("01-manage-all")
		ta.click(row + " .key-actions button")
		ta.waitFor("the confirmation", `document.getElementById('revoke-dialog').open`)
		if d := ta.str(`document.getElementById('revoke-desc').textContent`); !strings.Contains(d, "Bob's laptop") || !strings.Contains(d, "user_bob") {
			t.Errorf("the confirmation %q does not name the key and its owner", d)
		}
		ta.click("#revoke-confirm")
		ta.waitFor("Bob's key to leave the list", `!document.getElementById('revoke-dialog').open && !document.querySelector('`+row+`')`)
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
		tl := b.open(t)
		tl.page(s.url, "user", live)
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
		tt := b.open(t)
		tt.navigate(s.url + "/ui/api-keys?scope=user#token=" + tampered)
		tt.waitFor("the end of the session", `document.getElementById('app').dataset.state === 'over'`)
		if a := tt.str(uiAlert); !strings.Contains(a, "session is over") || !strings.Contains(a, "no longer valid") || !tt.bool(`document.getElementById('create-btn').hidden`) {
			t.Errorf("tampered token: alert %q", a)
		}
		tt.shot("01-tampered")

		time.Sleep(time.Until(shortEnd) + 500*time.Millisecond) // the token's expiry
		te := b.open(t)
		te.navigate(s.url + "/ui/api-keys?scope=user#token=" + short)
		te.waitFor("the end of the session", `document.getElementById('app').dataset.state === 'over'`)
		if a := te.str(uiAlert); !strings.Contains(a, "session is over") || !strings.Contains(a, "expired") || te.str(`document.getElementById('alert').getAttribute('role')`) != "alert" {
			t.Errorf("expired token: alert %q", a)
		}
		te.shot("02-expired")

		// The open page: its token expires, the next action ends the session.
		time.Sleep(time.Until(liveEnd) + 200*time.Millisecond) // the token's expiry
		tl.click("#create-btn")
		tl.typeInto("#key-name", "Too late")
		tl.click("#create-submit")
		tl.waitFor("the end of the session", `document.getElementById('app').dataset.state === 'over'`)
		if a := tl.str(uiAlert); !strings.Contains(a, "expired") {
			t.Errorf("expired during use: alert %q", a)
		}
		if n := evalIn[int](tl, `[...document.querySelectorAll('button, input')].filter(c => !c.disabled && !document.getElementById('secret-dialog').contains(c)).length`); n != 0 || tl.bool(`document.getElementById('create-dialog').open`) {
			t.Errorf("after the session ended: %d controls enabled, dialog open %v", n, tl.bool(`document.getElementById('create-dialog').open`))
		}
		tl.shot("03-expired-during-use")
	})

	t.Run("OrganizationKeys", func(t *testing.T) {
		ci := createKey(t, s.url, org, schemas.CreateAPIKeyRequest{Name: "CI pipeline", Permissions: []string{"projects:read", "tasks:write"}})
		tok, _ := uiMint(t, s.url, schemas.WidgetTokenRequest{OrganizationID: org, UserID: "user_grace", Permissions: []string{permOrg}})
		tb := b.open(t)
		tb.page(s.url, "organization", tok)
		row := `#key-rows tr[data-key-id="` + ci.ID + `"]`
		if tb.str(`(document.querySelector('`+row+` .key-owner') || {}).textContent || ''`) != "Organization" || tb.bool(`document.querySelectorAll('#key-rows tr').length !== 1`) {
			t.Fatalf("organization keys: %s", tb.str(`document.getElementById('key-rows').textContent`))
		}
		tb.click("#create-btn")
		tb.waitFor("the create dialog", `document.activeElement.id === 'key-name'`)
		if n := evalIn[int](tb, `document.querySelectorAll('#perm-list input').length`); n != 4 {
			t.Errorf("an organization key is offered %d permissions, want the whole catalogue", n)
		}
		tb.typeInto("#key-name", "Deploy bot")
		tb.click(`#perm-list input[value="projects:read"]`)
		tb.click(`#perm-list input[value="projects:write"]`)
		tb.click("#create-submit")
		tb.waitFor("the new key's value", `document.getElementById('secret-value')`)
		value := tb.str(`document.getElementById('secret-value').value`)
		tb.shot("01-organization-value")
		tb.click("#secret-done")
		tb.waitFor("the list with the new key", `document.querySelectorAll('#key-rows tr').length === 2 && `+uiReady)
		v := validate(t, s.url, value)
		if v.APIKey == nil || v.APIKey.Owner.Type != "organization" || v.APIKey.Owner.ID != org || v.APIKey.UserID != nil || !slices.Equal(v.APIKey.Permissions, []string{"projects:read", "projects:write"}) {
			t.Fatalf("the organization key: %+v", v)
		}
		if strings.Contains(tb.str(`document.documentElement.outerHTML`), value) {
			t.Error("the value is still in the document")
		}
		tb.shot("02-organization-keys")

		self, _ := uiMint(t, s.url, schemas.WidgetTokenRequest{OrganizationID: org, UserID: "user_ada", Permissions: []string{permSelf}})
		tn := b.open(t)
		tn.navigate(s.url + "/ui/api-keys?scope=organization#token=" + self)
		tn.waitFor("the denial", `document.getElementById('app').dataset.state === 'error'`)
		if a := tn.str(uiAlert); !strings.Contains(a, "may not manage this organization’s API keys") || !tn.bool(`document.getElementById('create-btn').hidden && document.getElementById('keys').hidden`) {
			t.Errorf("without widgets:api-keys:manage: %q", a)
		}
		tn.shot("03-organization-denied")
	})

	t.Run("NarrowScreen", func(t *testing.T) {
		createKey(t, s.url, org, schemas.CreateAPIKeyRequest{Name: "A key with a rather long name for a phone screen", UserID: "user_grace",
			Permissions: []string{"projects:read", "projects:write", "tasks:read", "tasks:write"}})
		createKey(t, s.url, org, schemas.CreateAPIKeyRequest{Name: "Sync job", UserID: "user_01E4ZCR3C56J083X43JQXF3JK5", Permissions: []string{"tasks:read"}})
		tok, _ := uiMint(t, s.url, schemas.WidgetTokenRequest{OrganizationID: org, UserID: "user_grace", Permissions: []string{permAll}})
		tb := b.open(t)
		tb.do(chromedp.EmulateViewport(320, 640, chromedp.EmulateMobile, chromedp.EmulateTouch))
		tb.page(s.url, "user", tok)
		tb.checkWidth(320)
		if tb.str(`getComputedStyle(document.querySelector('#key-rows tr')).display`) != "block" {
			t.Error("at 320px the keys are not cards")
		}
		tb.shot("01-list-320")
		tb.click("#create-btn")
		tb.waitFor("the create dialog", `document.activeElement.id === 'key-name'`)
		tb.checkWidth(320)
		tb.typeInto("#key-name", "Phone")
		tb.click(`#perm-list input[value="tasks:read"]`)
		tb.shot("02-create-320")
		tb.click("#create-submit")
		tb.waitFor("the new key's value", `document.getElementById('secret-value')`)
		tb.checkWidth(320)
		tb.shot("03-value-320")
		tb.click("#secret-done")
		tb.waitFor("the list", `!document.getElementById('secret-dialog').open && `+uiReady)
		tb.checkWidth(320)
	})

	t.Run("EmbeddedInAFrame", func(t *testing.T) {
		createKey(t, s.url, org, schemas.CreateAPIKeyRequest{Name: "Ada's script", UserID: "user_ada", Permissions: []string{"projects:read"}})
		tok, _ := uiMint(t, s.url, schemas.WidgetTokenRequest{OrganizationID: org, UserID: "user_ada", Permissions: []string{permSelf}})
		hostMu.Lock()
		hostPage = `<!doctype html><html lang="en"><title>Runway settings</title><h1>Settings</h1>` +
			`<iframe src="` + s.url + `/ui/api-keys?scope=user#token=` + tok + `" title="API keys" allow="clipboard-write" width="900" height="560"></iframe></html>`
		hostMu.Unlock()
		tb := b.open(t)
		tb.navigate(host.URL)
		frames, err := chromedp.Run(tb.ctx, chromedp.Nodes(chromedp.CSS("iframe"), chromedp.NodeReady))
		if err != nil || len(frames) != 1 {
			t.Fatalf("the host page's frame: %v, %d frames", err, len(frames))
		}
		in := chromedp.FromNode(frames[0])
		if err := chromedp.Do(tb.ctx, chromedp.WaitVisible(chromedp.CSS(`#key-rows tr`), in)); err != nil {
			t.Fatalf("the framed page lists no key: %v", err)
		}
		names, err := chromedp.Run(tb.ctx, chromedp.Text(chromedp.CSS(`#key-rows`), in))
		if err != nil || !strings.Contains(names, "Ada's script") {
			t.Errorf("the framed page lists %q (%v)", names, err)
		}
		if err := chromedp.Do(tb.ctx, chromedp.Click(chromedp.CSS("#create-btn"), in, chromedp.NodeVisible),
			chromedp.WaitVisible(chromedp.CSS("#key-name"), in)); err != nil {
			t.Fatalf("the framed page's create dialog: %v", err)
		}
		tb.shot("01-host-page-with-frame")
	})

	t.Run("TheGuardsWork", func(t *testing.T) {
		// The checks every tab makes are not vacuous: requests were seen,
		// all to the server, and an inline script is reported as a CSP
		// violation.
		tok, _ := uiMint(t, s.url, schemas.WidgetTokenRequest{OrganizationID: org, UserID: "user_ada", Permissions: []string{permSelf}})
		tb := b.open(t)
		tb.page(s.url, "user", tok)
		tb.mu.Lock()
		tb.expect = "script-src"
		tb.mu.Unlock()
		tb.do(chromedp.Evaluate[chromedp.Void](`{ const s = document.createElement('script'); s.textContent = 'document.title = "injected"'; document.body.appendChild(s); }`))
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			tb.mu.Lock()
			seen := tb.expected
			tb.mu.Unlock()
			if seen > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("an inline script was not reported as a CSP violation")
			}
		}
		if tb.str(`document.title`) == "injected" {
			t.Error("the CSP let an inline script run")
		}
		u, _ := url.Parse(s.url)
		h, _ := url.Parse(host.URL)
		b.mu.Lock()
		defer b.mu.Unlock()
		if len(b.hosts) != 2 || !b.hosts[u.Host] || !b.hosts[h.Host] {
			t.Errorf("hosts seen by all tabs: %v, want only %s and the host page's %s", b.hosts, u.Host, h.Host)
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

// uiBrowser is one headless Chromium for the whole test.
type uiBrowser struct {
	ctx   context.Context
	shots string

	mu    sync.Mutex
	hosts map[string]bool // every host a tab sent a request to
}

func uiChromium(t testing.TB) string {
	if p := os.Getenv("KEYLEDGER_CHROMIUM"); p != "" {
		return p
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium: install it (apt-get install chromium; scripts/test.sh does) or set KEYLEDGER_CHROMIUM")
	return ""
}

func uiStartBrowser(t *testing.T, origin string) *uiBrowser {
	t.Helper()
	b := &uiBrowser{hosts: map[string]bool{}, shots: os.Getenv("KEYLEDGER_UI_SCREENSHOTS")}
	if b.shots == "" {
		b.shots = t.TempDir()
	} else if err := os.MkdirAll(b.shots, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(uiChromium(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(cancelBrowser)
	// The first Do binds the browser's life to its context: no timeout here.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	b.ctx = bctx
	// Let the page use the clipboard without a prompt.
	ctx, cancel := context.WithTimeout(bctx, 10*time.Second)
	defer cancel()
	grant := map[string]any{"origin": origin, "permissions": []string{"clipboardReadWrite", "clipboardSanitizedWrite"}}
	if err := chromedp.FromContext(bctx).Browser.Call(ctx, "Browser.grantPermissions", grant, nil); err != nil {
		t.Fatalf("grant clipboard permissions: %v", err)
	}
	return b
}

// cspWatch turns every securitypolicyviolation event into a console error
// the tab's listener sees. DevTools injects it, so the CSP does not apply.
const uiCSPWatch = `document.addEventListener('securitypolicyviolation', function (e) {
  console.error('CSP violation: ' + e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline') + ' at ' + e.sourceFile + ':' + e.lineNumber);
}, true);`

type uiTab struct {
	t   *testing.T
	b   *uiBrowser
	ctx context.Context

	mu       sync.Mutex
	problems []string
	expect   string // a problem the test causes on purpose
	expected int    // how many times it was seen
}

// open opens a tab for the rest of t, for at most 40 seconds.
func (b *uiBrowser) open(t *testing.T) *uiTab {
	t.Helper()
	tb := &uiTab{t: t, b: b}
	t.Cleanup(func() {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		for _, p := range tb.problems {
			t.Error(p)
		}
	})
	ctx, cancelTab := chromedp.NewContext(b.ctx, chromedp.WithListener(tb.listen))
	t.Cleanup(cancelTab)
	ctx, cancel := context.WithTimeout(ctx, 40*time.Second)
	t.Cleanup(cancel)
	tb.ctx = ctx
	tb.do(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: uiCSPWatch}); err != nil {
			return err
		}
		// Headless tabs lose focus to one another; the clipboard needs it.
		_, err := cdp.Call(ctx, tg, emulation.SetFocusEmulationEnabled, emulation.SetFocusEmulationEnabledParams{Enabled: true})
		return err
	}))
	return tb
}

// listen runs in the tab's event loop: it only records.
func (tb *uiTab) listen(ev any) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	n := len(tb.problems)
	defer func() {
		if tb.expect != "" && len(tb.problems) > n && strings.Contains(tb.problems[n], tb.expect) {
			tb.problems = tb.problems[:n]
			tb.expected++
		}
	}()
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		u, err := url.Parse(ev.Request.URL)
		if err != nil {
			tb.problems = append(tb.problems, "unparsable request URL "+ev.Request.URL)
			return
		}
		if u.Scheme == "data" || u.Scheme == "about" {
			return
		}
		tb.b.mu.Lock()
		tb.b.hosts[u.Host] = true
		tb.b.mu.Unlock()
		if u.Hostname() != "127.0.0.1" {
			tb.problems = append(tb.problems, "the page sent a request off 127.0.0.1: "+ev.Request.Method+" "+ev.Request.URL)
		}
	case *runtime.EventConsoleAPICalled:
		var parts []string
		for _, a := range ev.Args {
			if s, err := strconv.Unquote(string(a.Value)); err == nil {
				parts = append(parts, s)
			} else {
				parts = append(parts, string(a.Value)+a.Description)
			}
		}
		if text := strings.Join(parts, " "); strings.Contains(text, "CSP violation") || strings.Contains(text, "Content Security Policy") {
			tb.problems = append(tb.problems, text)
		}
	case *log.EventEntryAdded:
		if strings.Contains(ev.Entry.Text, "Content Security Policy") || strings.Contains(ev.Entry.Text, "Content-Security-Policy") {
			tb.problems = append(tb.problems, "browser log: "+ev.Entry.Text)
		}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg := d.Text
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
		tb.problems = append(tb.problems, fmt.Sprintf("uncaught exception at %s:%d: %s", d.URL, d.LineNumber+1, msg))
	}
}

func (tb *uiTab) do(steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	if err := chromedp.Do(tb.ctx, steps...); err != nil {
		tb.t.Fatal(err)
	}
}

func (tb *uiTab) navigate(u string) { tb.t.Helper(); tb.do(chromedp.Navigate(u)) }

// page opens the settings page with a token and waits for its list.
func (tb *uiTab) page(base, scope, token string) {
	tb.t.Helper()
	tb.navigate(base + "/ui/api-keys?scope=" + scope + "#token=" + token)
	tb.waitFor("the list", uiReady)
}

func (tb *uiTab) click(sel string) {
	tb.t.Helper()
	tb.do(chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

func (tb *uiTab) typeInto(sel, text string) {
	tb.t.Helper()
	tb.do(chromedp.SendKeys(chromedp.CSS(sel), text, chromedp.NodeVisible))
}

func (tb *uiTab) escape() { tb.t.Helper(); tb.do(chromedp.KeyEvent(kb.Escape)) }

func evalIn[T any](tb *uiTab, expr string) T {
	tb.t.Helper()
	v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

func (tb *uiTab) str(expr string) string { tb.t.Helper(); return evalIn[string](tb, expr) }
func (tb *uiTab) bool(expr string) bool  { tb.t.Helper(); return evalIn[bool](tb, "!!("+expr+")") }

// waitFor polls a JavaScript condition. (chromedp.Poll compiles its
// predicate with new Function, which the page's CSP refuses.)
func (tb *uiTab) waitFor(what, cond string) {
	tb.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, err := chromedp.Run(tb.ctx, chromedp.Evaluate[bool]("!!("+cond+")"))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) || tb.ctx.Err() != nil {
			tb.shot("timeout")
			tb.t.Fatalf("waiting for %s (%s): err %v; alert %q", what, cond, err, evalIn[string](tb, `(document.getElementById('alert') || {}).textContent || ''`))
		}
		time.Sleep(15 * time.Millisecond)
	}
}

// checkWidth fails when the page scrolls sideways at width pixels.
func (tb *uiTab) checkWidth(width int) {
	tb.t.Helper()
	if w := evalIn[int](tb, `document.documentElement.scrollWidth`); w > width {
		tb.shot("overflow")
		tb.t.Errorf("the page is %d px wide at a width of %d px", w, width)
	}
}

// shot saves a full-page PNG of the tab.
func (tb *uiTab) shot(name string) {
	tb.t.Helper()
	buf, err := chromedp.Run(tb.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		tb.t.Logf("screenshot %s: %v", name, err)
		return
	}
	file := filepath.Join(tb.b.shots, strings.ReplaceAll(tb.t.Name(), "/", "-")+"-"+name+".png")
	if err := os.WriteFile(file, buf, 0o644); err != nil {
		tb.t.Fatal(err)
	}
}
