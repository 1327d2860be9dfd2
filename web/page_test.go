package web

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"net/http/httptest"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/keyledger/keyledger/internal/browsertest"
)

// These tests drive the page in Chromium (internal/browsertest) against a
// fake of the API, for what the real server cannot show quickly: keys
// unused for months, lists longer than a page, every error path, and focus
// handling. The real server's browser tests are in cmd/keyledger/ui_test.go.

const testCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"

type fakeOwner struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

type fakeKey struct {
	Object          string     `json:"object"`
	ID              string     `json:"id"`
	Owner           fakeOwner  `json:"owner"`
	OrganizationID  string     `json:"organization_id"`
	UserID          *string    `json:"user_id"`
	Name            string     `json:"name"`
	ObfuscatedValue string     `json:"obfuscated_value"`
	Value           string     `json:"value,omitempty"`
	LastUsedAt      *time.Time `json:"last_used_at"`
	Permissions     []string   `json:"permissions"`
	Status          string     `json:"status"`
	ExpiresAt       *time.Time `json:"expires_at"`
	CreatedAt       time.Time  `json:"created_at"`
	UpdatedAt       time.Time  `json:"updated_at"`
}

type fakeError struct {
	status      int
	code, where string
}

// fakeAPI answers the routes the page uses, the way the contract says.
type fakeAPI struct {
	t   *testing.T
	url string

	mu        sync.Mutex
	token     string
	session   map[string]any
	keys      []*fakeKey // newest first
	fail      []fakeError
	listCalls int
	created   []map[string]any // bodies of the creates
	seq       int
}

func newFakeAPI(t *testing.T, perms []string, userPerms []string) *fakeAPI {
	f := &fakeAPI{t: t, token: "kwt_fake." + rand.Text()}
	f.session = map[string]any{
		"organization_id": "org_fake", "user_id": "user_me", "permissions": perms,
		"user_permissions": userPerms, "catalogue": []string{"projects:read", "projects:write", "tasks:read", "tasks:write"},
		"expires_at": time.Now().Add(10 * time.Minute).UTC().Format(time.RFC3339), "stale_after_days": 90,
	}
	static, err := fs.Sub(Files, "static")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	serve := func(w http.ResponseWriter, name string) {
		b, err := fs.ReadFile(static, name)
		if err != nil {
			http.NotFound(w, nil)
			return
		}
		w.Header().Set("Content-Type", mime.TypeByExtension(path.Ext(name)))
		w.Header().Set("Content-Security-Policy", testCSP)
		w.Write(b)
	}
	mux.HandleFunc("GET /ui/api-keys", func(w http.ResponseWriter, r *http.Request) { serve(w, "index.html") })
	mux.HandleFunc("GET /ui/assets/{file}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("file") == "index.html" {
			http.NotFound(w, r)
			return
		}
		serve(w, r.PathValue("file"))
	})
	mux.HandleFunc("GET /widgets/session", f.auth("session", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, f.session)
	}))
	mux.HandleFunc("GET /organizations/{org}/api_keys", f.auth("list", f.list))
	mux.HandleFunc("POST /organizations/{org}/api_keys", f.auth("create", f.create))
	mux.HandleFunc("DELETE /api_keys/{id}", f.auth("revoke", f.revoke))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// auth checks the bearer token and plays the next queued failure for where.
func (f *fakeAPI) auth(where string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+f.token {
			writeJSON(w, 401, map[string]string{"code": "invalid_widget_token", "message": "the widget token is not valid"})
			return
		}
		for i, e := range f.fail {
			if e.where == where {
				f.fail = slices.Delete(f.fail, i, i+1)
				writeJSON(w, e.status, map[string]string{"code": e.code, "message": "fake " + e.code})
				return
			}
		}
		h(w, r)
	}
}

func (f *fakeAPI) failNext(where string, status int, code string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = append(f.fail, fakeError{status, code, where})
}

func (f *fakeAPI) list(w http.ResponseWriter, r *http.Request) {
	f.listCalls++
	q := r.URL.Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	if limit <= 0 || limit > 100 {
		limit = 10
	}
	var all []*fakeKey
	for _, k := range f.keys {
		if k.Owner.Type == q.Get("owner_type") && (q.Get("status") == "" || k.Status == q.Get("status")) {
			all = append(all, k)
		}
	}
	if a := q.Get("after"); a != "" {
		i := slices.IndexFunc(all, func(k *fakeKey) bool { return k.ID == a })
		all = all[i+1:]
	}
	out := map[string]any{"object": "list", "data": []*fakeKey{}, "list_metadata": map[string]any{"before": nil, "after": nil}}
	if len(all) > limit {
		out["list_metadata"] = map[string]any{"before": nil, "after": all[limit-1].ID}
		all = all[:limit]
	}
	if len(all) > 0 {
		out["data"] = all
	}
	writeJSON(w, 200, out)
}

func (f *fakeAPI) create(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeJSON(w, 400, map[string]string{"code": "invalid_json", "message": err.Error()})
		return
	}
	f.created = append(f.created, body)
	k := f.addLocked(body["name"].(string), time.Now(), nil)
	if uid, ok := body["user_id"].(string); ok {
		k.Owner, k.UserID = fakeOwner{"user", uid}, &uid
	} else {
		k.Owner, k.UserID = fakeOwner{"organization", "org_fake"}, nil
	}
	for _, p := range body["permissions"].([]any) {
		k.Permissions = append(k.Permissions, p.(string))
	}
	if e, ok := body["expires_at"].(string); ok {
		at, err := time.Parse(time.RFC3339, e)
		if err != nil {
			writeJSON(w, 400, map[string]string{"code": "invalid_expires_at", "message": err.Error()})
			return
		}
		k.ExpiresAt = &at
	}
	value := "sk_test_" + rand.Text() + rand.Text()
	k.ObfuscatedValue = "sk_test_…" + value[len(value)-4:]
	out := *k
	out.Value = value
	writeJSON(w, 201, out)
}

func (f *fakeAPI) revoke(w http.ResponseWriter, r *http.Request) {
	for _, k := range f.keys {
		if k.ID == r.PathValue("id") {
			k.Status = "revoked"
			writeJSON(w, 200, k)
			return
		}
	}
	writeJSON(w, 404, map[string]string{"code": "api_key_not_found", "message": "no such key"})
}

// add puts a user_me key in front of the list and returns it; change it
// under f.mu (as edit does).
func (f *fakeAPI) add(name string, created time.Time, lastUsed *time.Time) *fakeKey {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addLocked(name, created, lastUsed)
}

func (f *fakeAPI) edit(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

func (f *fakeAPI) addLocked(name string, created time.Time, lastUsed *time.Time) *fakeKey {
	f.seq++
	uid := "user_me"
	k := &fakeKey{Object: "api_key", ID: fmt.Sprintf("api_key_%04d", f.seq), Owner: fakeOwner{"user", uid}, OrganizationID: "org_fake",
		UserID: &uid, Name: name, ObfuscatedValue: fmt.Sprintf("sk_test_…%04d", f.seq), LastUsedAt: lastUsed,
		Permissions: []string{"projects:read"}, Status: "active", CreatedAt: created.UTC(), UpdatedAt: created.UTC()}
	f.keys = append([]*fakeKey{k}, f.keys...)
	return k
}

func (f *fakeAPI) open(tb *browsertest.Tab, scope string) {
	tb.T().Helper()
	tb.Navigate(f.url + "/ui/api-keys?scope=" + scope + "#token=" + f.token)
}

const (
	jsRows      = `document.querySelectorAll('#key-rows tr').length`
	jsReady     = `document.getElementById('app').dataset.state === 'ready'`
	jsAlert     = `document.getElementById('alert').textContent`
	jsActiveID  = `document.activeElement ? document.activeElement.id : ''`
	jsOverflows = `document.documentElement.scrollWidth > window.innerWidth`
)

func TestPage(t *testing.T) {
	browser := browsertest.Start(t, browsertest.Options{TabTimeout: 30 * time.Second})
	day := 24 * time.Hour

	t.Run("ListsEveryPageFlagsUnusedKeysAndShowsNamesAsText", func(t *testing.T) {
		f := newFakeAPI(t, []string{"widgets:user-api-keys:manage-all"}, nil)
		now := time.Now()
		for i := range 125 {
			f.add(fmt.Sprintf("Filler %03d", i), now.Add(-time.Duration(i)*time.Minute), nil)
		}
		used100 := now.Add(-100*day - time.Hour)
		usedYesterday := now.Add(-day)
		past := now.Add(-time.Hour)
		f.edit(func() {
			f.addLocked("Used long ago", now.Add(-300*day), &used100).Owner.ID = "user_01E4ZCR3C56J083X43JQXF3JK5"
			f.addLocked("Deploy bot for the staging cluster", now.Add(-3*day), &usedYesterday).Permissions = []string{"projects:read", "projects:write", "tasks:read", "tasks:write"}
			f.addLocked("Used yesterday", now.Add(-300*day), &usedYesterday)
			f.addLocked("Never used", now.Add(-120*day-time.Hour), nil)
			f.addLocked(`<img src=x onerror="document.title='owned'">`, now, nil)
			f.addLocked("Expired", now.Add(-2*day), nil).ExpiresAt = &past
			f.addLocked("Revoked", now.Add(-2*day), nil).Status = "revoked"
		})
		tb := browser.Open(t)
		f.open(tb, "user")
		tb.WaitFor("the list", jsReady)

		if n := browsertest.Eval[int](tb, jsRows); n != 130 {
			t.Fatalf("%d rows, want 130 (125 fillers, 5 named, no expired or revoked key)", n)
		}
		f.edit(func() {
			if f.listCalls != 2 {
				t.Errorf("%d list calls for 130 active keys, want 2 pages of 100", f.listCalls)
			}
		})
		badge := func(name string) string {
			return tb.Str(`(() => { const r = [...document.querySelectorAll('#key-rows tr')].find(r => r.querySelector('th .name').textContent === ` + strconv.Quote(name) + `);
				const b = r && r.querySelector('.badge'); return b ? b.textContent : '' })()`)
		}
		if b := badge("Never used"); b != "unused for 120 days" {
			t.Errorf("never used for 120 days: badge %q", b)
		}
		if b := badge("Used long ago"); b != "unused for 100 days" {
			t.Errorf("last used 100 days ago: badge %q", b)
		}
		if b := badge("Used yesterday"); b != "" {
			t.Errorf("used yesterday: badge %q", b)
		}
		if b := badge("Filler 000"); b != "" {
			t.Errorf("new key: badge %q", b)
		}
		if !tb.Bool(`[...document.querySelectorAll('#key-rows th .name')].some(th => th.textContent === '<img src=x onerror="document.title=\'owned\'">')`) ||
			tb.Bool(`document.querySelector('#key-rows img')`) || tb.Str(`document.title`) != "API keys" {
			t.Error("a key's name was parsed as HTML")
		}
		owners := tb.Str(`[...document.querySelectorAll('#key-rows td.key-owner')].map(td => td.textContent).slice(0, 7).join('|')`)
		if !strings.Contains(owners, "user_me (you)") || !strings.Contains(owners, "user_01E4ZCR3C56J083X43JQXF3JK5") || !tb.Bool(`!document.querySelector('th.col-owner').hidden`) {
			t.Errorf("owners %q", owners)
		}
		if tb.Bool(`location.href.includes('#') || location.href.includes('token')`) || tb.Bool(`localStorage.length || sessionStorage.length || document.cookie`) {
			t.Error("the token stayed in the address bar, or the page stored something")
		}
		if c := tb.Str(`document.getElementById('caption').textContent`); c != "Active keys (130)" {
			t.Errorf("caption %q", c)
		}
		tb.ShotViewport("desktop")

		for _, w := range []int{1024, 800, 700, 641, 639, 480, 320} {
			var opts []chromedp.EmulateViewportOption
			if w <= 480 {
				opts = append(opts, chromedp.EmulateMobile)
			}
			tb.Do(chromedp.EmulateViewport(int64(w), 700, opts...))
			tb.WaitFor("the viewport", `window.innerWidth === `+strconv.Itoa(w))
			// Wait two frames for the layout (Eval awaits the promise).
			browsertest.Eval[bool](tb, `new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))`)
			tb.ShotViewport(strconv.Itoa(w))
			if tb.Bool(jsOverflows) {
				t.Errorf("at %dpx the page is %s px wide", w, tb.Str(`String(document.documentElement.scrollWidth)`))
			}
		}
		if tb.Str(`getComputedStyle(document.querySelector('#key-rows tr')).display`) != "block" {
			t.Error("at 320px the rows are not cards")
		}
	})

	t.Run("CreateErrorsAndTheEndOfTheSession", func(t *testing.T) {
		f := newFakeAPI(t, []string{"widgets:user-api-keys:manage-self"}, []string{"tasks:read", "projects:read", "billing:read"})
		tb := browser.Open(t)
		f.open(tb, "user")
		tb.WaitFor("the empty list", jsReady+` && !document.getElementById('empty').hidden`)
		tb.Shot("empty")
		if tb.Bool(`document.getElementById('create-btn').hidden`) {
			t.Fatal("manage-self: no Create button")
		}
		tb.Click("#create-btn")
		tb.WaitFor("the create dialog", `document.getElementById('create-dialog').open`)
		if id := tb.Str(jsActiveID); id != "key-name" {
			t.Errorf("focus in the create dialog: %q", id)
		}
		if offered := tb.Str(`[...document.querySelectorAll('#perm-list input')].map(b => b.value + (b.labels.length === 1 ? '' : '(unlabelled)')).join(',')`); offered != "projects:read,tasks:read" {
			t.Errorf("offered %q, want the catalogue ∩ the user's permissions", offered)
		}

		tb.Click("#create-submit")
		if e := tb.Str(`document.getElementById('key-name-error').textContent`); !strings.Contains(e, "Enter a name") || !tb.Bool(`document.getElementById('key-name').getAttribute('aria-invalid') === 'true'`) {
			t.Errorf("empty name: error %q", e)
		}
		tb.Type("#key-name", "Nightly")
		tb.Click(`#perm-list input[value="tasks:read"]`)
		f.failNext("create", 422, "permission_exceeds_user")
		tb.Click("#create-submit")
		tb.WaitFor("the create error", `document.getElementById('create-error').textContent.includes('fake permission_exceeds_user')`)
		f.failNext("create", 400, "invalid_name")
		tb.Click("#create-submit")
		tb.WaitFor("the name error", `document.getElementById('key-name-error').textContent === 'fake invalid_name'`)
		tb.Shot("errors")

		tomorrow := time.Now().UTC().Add(24 * time.Hour).Format("2006-01-02")
		tb.Do(chromedp.SetValue(chromedp.CSS("#key-expiry"), tomorrow))
		f.failNext("create", 401, "widget_token_expired")
		tb.Click("#create-submit")
		tb.WaitFor("the end of the session", `document.getElementById('app').dataset.state === 'over'`)
		if a := tb.Str(jsAlert); !strings.Contains(a, "session is over") || !strings.Contains(a, "expired") {
			t.Errorf("alert %q", a)
		}
		if tb.Bool(`document.getElementById('create-dialog').open`) {
			t.Error("the create dialog stayed open")
		}
		if n := browsertest.Eval[int](tb, `[...document.querySelectorAll('button, input')].filter(c => !c.disabled && !document.getElementById('secret-dialog').contains(c)).length`); n != 0 {
			t.Errorf("%d controls still enabled after the session ended", n)
		}
		if id := tb.Str(jsActiveID); id != "alert" {
			t.Errorf("focus after the session ended: %q", id)
		}
		tb.Shot("session-over")

		// The host hands over a new token through the fragment.
		var tok string
		f.edit(func() { f.token = "kwt_fake." + rand.Text(); tok = f.token })
		tb.Do(chromedp.Evaluate[chromedp.Void](`location.hash = '#token=` + tok + `'`))
		tb.WaitFor("the page with the new token", jsReady+` && !document.getElementById('create-btn').disabled`)
		if tb.Str(jsAlert) != "" || tb.Bool(`location.href.includes('token')`) {
			t.Errorf("after a new token: alert %q, address %q", tb.Str(jsAlert), tb.Str(`location.href`))
		}
		tb.Click("#create-btn")
		tb.Type("#key-name", "Nightly")
		tb.Click(`#perm-list input[value="tasks:read"]`)
		tb.Do(chromedp.SetValue(chromedp.CSS("#key-expiry"), tomorrow))
		tb.Click("#create-submit")
		tb.WaitFor("the new key", `document.getElementById('secret-dialog').open`)
		var body map[string]any
		f.edit(func() { body = f.created[len(f.created)-1] })
		if body["expires_at"] != tomorrow+"T23:59:59Z" || body["user_id"] != "user_me" || fmt.Sprint(body["permissions"]) != "[tasks:read]" || body["name"] != "Nightly" {
			t.Errorf("create body %v", body)
		}
	})

	t.Run("KeyboardFocusAndTheCopyFallback", func(t *testing.T) {
		f := newFakeAPI(t, []string{"widgets:user-api-keys:manage-self"}, nil)
		f.add("First", time.Now().Add(-time.Hour), nil)
		f.add("Second", time.Now(), nil)
		tb := browser.Open(t)
		// A clipboard that refuses, as in a frame without clipboard-write.
		tb.OnNewDocument(`navigator.clipboard.writeText = () => Promise.reject(new DOMException('denied', 'NotAllowedError'));`)
		f.open(tb, "user")
		tb.WaitFor("the list", jsReady+` && `+jsRows+` === 2`)
		if tb.Bool(`!document.querySelector('th.col-owner').hidden`) {
			t.Error("manage-self: an owner column")
		}

		tb.Do(chromedp.Focus(chromedp.CSS("#create-btn")))
		tb.Key(kb.Enter)
		tb.WaitFor("the create dialog", `document.getElementById('create-dialog').open && document.activeElement.id === 'key-name'`)
		if offered := browsertest.Eval[int](tb, `document.querySelectorAll('#perm-list input').length`); offered != 4 {
			t.Errorf("user_permissions null: %d permissions offered, want the whole catalogue", offered)
		}
		tb.Escape()
		tb.WaitFor("the closed dialog", `!document.getElementById('create-dialog').open && document.activeElement.id === 'create-btn'`)

		tb.Key(kb.Enter)
		tb.WaitFor("the create dialog", `document.activeElement.id === 'key-name'`)
		tb.Do(chromedp.KeyEvent("Laptop\r"))
		tb.WaitFor("the new key", `document.getElementById('secret-dialog').open && document.activeElement.id === 'secret-value'`)
		value := tb.Str(`document.getElementById('secret-value').value`)
		if !strings.HasPrefix(value, "sk_test_") {
			t.Fatalf("shown value %q", value)
		}
		tb.Click("#copy-btn")
		tb.WaitFor("the copy fallback", `document.getElementById('copy-status').textContent.includes('Ctrl+C')`)
		if !tb.Bool(`document.activeElement.id === 'secret-value' && document.activeElement.selectionStart === 0 && document.activeElement.selectionEnd === document.activeElement.value.length`) {
			t.Error("after a refused copy the value is not selected")
		}
		tb.Shot("copy-fallback")
		tb.Escape()
		tb.WaitFor("the list with the new key", `!document.getElementById('secret-dialog').open && `+jsRows+` === 3`)
		if tb.Str(jsActiveID) != "create-btn" {
			t.Errorf("focus after the value dialog: %q", tb.Str(jsActiveID))
		}
		if tb.Bool(`document.getElementById('secret-value')`) || strings.Contains(tb.Str(`document.documentElement.outerHTML`), value) {
			t.Error("the value is still in the document")
		}
		if s := tb.Str(`document.getElementById('status').textContent`); s != "Key “Laptop” created." {
			t.Errorf("status %q", s)
		}

		// Revoke: focus goes to Cancel, Escape brings it back to the button.
		sel := `#key-rows tr:nth-child(2) .key-actions button`
		label := tb.Str(`document.querySelector('` + sel + `').getAttribute('aria-label')`)
		tb.Click(sel)
		tb.WaitFor("the revoke dialog", `document.getElementById('revoke-dialog').open && document.activeElement.id === 'revoke-cancel'`)
		if d := tb.Str(`document.getElementById('revoke-desc').textContent`); !strings.Contains(d, "“"+strings.TrimPrefix(label, "Revoke ")+"”") {
			t.Errorf("the confirmation %q does not name the key (%s)", d, label)
		}
		tb.Escape()
		tb.WaitFor("focus back on the Revoke button", `!document.getElementById('revoke-dialog').open && document.activeElement.getAttribute('aria-label') === `+strconv.Quote(label))
		tb.Key(kb.Enter)
		tb.WaitFor("the revoke dialog", `document.activeElement.id === 'revoke-cancel'`)
		f.failNext("revoke", 500, "internal")
		tb.Click("#revoke-confirm")
		tb.WaitFor("the revoke error", `document.getElementById('revoke-error').textContent.includes('fake internal')`)
		tb.Click("#revoke-confirm")
		tb.WaitFor("the key gone", `!document.getElementById('revoke-dialog').open && `+jsRows+` === 2`)
		if tb.Bool(`[...document.querySelectorAll('#key-rows button')].some(b => b.getAttribute('aria-label') === ` + strconv.Quote(label) + `)`) {
			t.Error("the revoked key is still listed")
		}
		if !strings.HasPrefix(tb.Str(`document.activeElement.getAttribute('aria-label') || ''`), "Revoke ") {
			t.Errorf("focus after revoking: %q", tb.Str(`document.activeElement.outerHTML`))
		}
	})

	t.Run("AListThatFailsToLoadSaysSoUntilTheNextLoad", func(t *testing.T) {
		f := newFakeAPI(t, []string{"widgets:user-api-keys:manage-self"}, nil)
		f.add("First", time.Now(), nil)
		f.failNext("list", 503, "unavailable")
		tb := browser.Open(t)
		f.open(tb, "user")
		tb.WaitFor("the load error", jsReady+` && document.getElementById('alert').textContent.includes('could not be loaded: fake unavailable')`)
		tb.Click("#create-btn")
		tb.Type("#key-name", "Second\r")
		tb.WaitFor("the new key", `document.getElementById('secret-value')`)
		tb.Click("#secret-done")
		tb.WaitFor("the list", jsReady+` && `+jsRows+` === 2`)
		if a := tb.Str(jsAlert); a != "" {
			t.Errorf("after a good load the alert still says %q", a)
		}
	})

	t.Run("NoTokenUnknownScopeAndNoPermission", func(t *testing.T) {
		f := newFakeAPI(t, []string{"widgets:user-api-keys:manage-self"}, nil)
		tb := browser.Open(t)
		tb.Navigate(f.url + "/ui/api-keys?scope=user")
		tb.WaitFor("the no-token message", `document.getElementById('app').dataset.state === 'error'`)
		if a := tb.Str(jsAlert); !strings.Contains(a, "no widget token") {
			t.Errorf("without a token: %q", a)
		}
		tb.Shot("no-token")
		tb.Navigate(f.url + "/ui/api-keys?scope=team#token=" + f.token)
		tb.WaitFor("the scope message", `document.getElementById('app').dataset.state === 'error'`)
		if a := tb.Str(jsAlert); !strings.Contains(a, "“team”") {
			t.Errorf("unknown scope: %q", a)
		}
		f.open(tb, "organization")
		tb.WaitFor("the denial", `document.getElementById('app').dataset.state === 'error'`)
		if a := tb.Str(jsAlert); !strings.Contains(a, "may not manage this organization’s API keys") || !tb.Bool(`document.getElementById('create-btn').hidden`) {
			t.Errorf("organization scope without widgets:api-keys:manage: %q", a)
		}
		tb.Shot("denied")
		f.edit(func() { f.session["permissions"] = []string{"widgets:api-keys:manage"} })
		f.open(tb, "user")
		tb.WaitFor("the denial", `document.getElementById('app').dataset.state === 'error'`)
		if a := tb.Str(jsAlert); !strings.Contains(a, "may not manage user API keys") {
			t.Errorf("user scope with only widgets:api-keys:manage: %q", a)
		}
	})
}
