package browsertest

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
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
)

// Options configure a browser.
type Options struct {
	// TabTimeout bounds the life of each tab; 30 seconds when zero.
	TabTimeout time.Duration
	// ClipboardOrigin, when set, may read and write the clipboard without
	// a prompt, and every tab emulates focus (headless tabs lose focus to
	// one another; the clipboard needs it).
	ClipboardOrigin string
}

// Browser is one headless Chromium with a fresh profile that lives as
// long as the test that started it.
type Browser struct {
	ctx   context.Context
	opts  Options
	shots string

	mu    sync.Mutex
	hosts map[string]bool // every host a tab sent a request to
}

// chromium is KEYLEDGER_CHROMIUM, /usr/bin/chromium, or a Chromium or
// Chrome on PATH.
func chromium(t testing.TB) string {
	t.Helper()
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

// Start starts a headless Chromium for the rest of t.
func Start(t testing.TB, opts Options) *Browser {
	t.Helper()
	if opts.TabTimeout == 0 {
		opts.TabTimeout = 30 * time.Second
	}
	b := &Browser{opts: opts, hosts: map[string]bool{}, shots: os.Getenv("KEYLEDGER_UI_SCREENSHOTS")}
	if b.shots == "" {
		b.shots = t.TempDir()
	} else if err := os.MkdirAll(b.shots, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := chromium(t)
	flags := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), flags...)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(cancelBrowser)
	// The first Do binds the browser's life to its context: no timeout here.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start Chromium %s: %v", exe, err)
	}
	b.ctx = bctx
	if opts.ClipboardOrigin != "" {
		ctx, cancel := context.WithTimeout(bctx, 10*time.Second)
		defer cancel()
		grant := map[string]any{"origin": opts.ClipboardOrigin, "permissions": []string{"clipboardReadWrite", "clipboardSanitizedWrite"}}
		if err := chromedp.FromContext(bctx).Browser.Call(ctx, "Browser.grantPermissions", grant, nil); err != nil {
			t.Fatalf("grant clipboard permissions: %v", err)
		}
	}
	return b
}

// Hosts returns every host (host:port) a tab of b sent a request to.
func (b *Browser) Hosts() map[string]bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return maps.Clone(b.hosts)
}

// cspWatch turns every securitypolicyviolation event into a console error
// the tab's listener sees. DevTools injects it, so the page's CSP does not
// apply to it.
const cspWatch = `document.addEventListener('securitypolicyviolation', function (e) {
  console.error('CSP violation: ' + e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline') + ' at ' + e.sourceFile + ':' + e.lineNumber);
}, true);`

// Tab is one tab of a Browser, for one test. Its test fails, when it
// ends, with every problem the tab saw: a request to another host than
// 127.0.0.1, a CSP violation, an uncaught exception.
type Tab struct {
	t   testing.TB
	b   *Browser
	ctx context.Context

	mu       sync.Mutex
	problems []string
	expect   string // a problem the test causes on purpose
	expected int    // how many times it was seen
}

// Open opens a tab for the rest of t, for at most the browser's
// TabTimeout.
func (b *Browser) Open(t testing.TB) *Tab {
	t.Helper()
	tb := &Tab{t: t, b: b}
	t.Cleanup(func() {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		for _, p := range tb.problems {
			t.Error(p)
		}
	})
	ctx, cancelTab := chromedp.NewContext(b.ctx, chromedp.WithListener(tb.listen))
	t.Cleanup(cancelTab)
	ctx, cancel := context.WithTimeout(ctx, b.opts.TabTimeout)
	t.Cleanup(cancel)
	tb.ctx = ctx
	tb.OnNewDocument(cspWatch)
	if b.opts.ClipboardOrigin != "" {
		// Headless tabs lose focus to one another; the clipboard needs it.
		tb.Do(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, emulation.SetFocusEmulationEnabled, emulation.SetFocusEmulationEnabledParams{Enabled: true})
			return err
		}))
	}
	return tb
}

// listen runs in the tab's event loop: it only records.
func (tb *Tab) listen(ev any) {
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

// Expect makes the tab count, instead of failing on, the problems that
// contain what: for a test that breaks a guard on purpose.
func (tb *Tab) Expect(what string) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.expect = what
}

// Expected says how many problems Expect has caught so far.
func (tb *Tab) Expected() int {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return tb.expected
}

// T is the test the tab belongs to.
func (tb *Tab) T() testing.TB { return tb.t }

// Context is the tab's, for chromedp.Run and chromedp.Do.
func (tb *Tab) Context() context.Context { return tb.ctx }

// Do runs steps in the tab; an error fails the test.
func (tb *Tab) Do(steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	if err := chromedp.Do(tb.ctx, steps...); err != nil {
		tb.t.Fatal(err)
	}
}

// OnNewDocument runs src in every document the tab loads from now on,
// before the page's own scripts.
func (tb *Tab) OnNewDocument(src string) {
	tb.t.Helper()
	tb.Do(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: src})
		return err
	}))
}

// Navigate loads u.
func (tb *Tab) Navigate(u string) { tb.t.Helper(); tb.Do(chromedp.Navigate(u)) }

// Click clicks the element sel selects once it is visible.
func (tb *Tab) Click(sel string) {
	tb.t.Helper()
	tb.Do(chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

// Type types text into the element sel selects once it is visible.
func (tb *Tab) Type(sel, text string) {
	tb.t.Helper()
	tb.Do(chromedp.SendKeys(chromedp.CSS(sel), text, chromedp.NodeVisible))
}

// Key presses k (a character or a kb constant) in the focused element.
func (tb *Tab) Key(k string) { tb.t.Helper(); tb.Do(chromedp.KeyEvent(k)) }

// Escape presses Escape.
func (tb *Tab) Escape() { tb.t.Helper(); tb.Key(kb.Escape) }

// Eval evaluates the JavaScript expression expr in the tab, awaiting it
// when it is a promise; an error fails the test.
func Eval[T any](tb *Tab, expr string) T {
	tb.t.Helper()
	v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// Str evaluates a JavaScript expression of type string.
func (tb *Tab) Str(expr string) string { tb.t.Helper(); return Eval[string](tb, expr) }

// Bool evaluates a JavaScript expression as a boolean (!!expr).
func (tb *Tab) Bool(expr string) bool { tb.t.Helper(); return Eval[bool](tb, "!!("+expr+")") }

// WaitFor polls the JavaScript condition cond for up to 10 seconds. On a
// timeout it saves a screenshot and fails the test with what, cond and
// the texts of the page's #alert and #status.
func (tb *Tab) WaitFor(what, cond string) {
	tb.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, err := chromedp.Run(tb.ctx, chromedp.Evaluate[bool]("!!("+cond+")"))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) || tb.ctx.Err() != nil {
			tb.Shot("timeout")
			tb.t.Fatalf("waiting for %s (%s): err %v; alert %q, status %q", what, cond, err, tb.textOf("alert"), tb.textOf("status"))
		}
		time.Sleep(15 * time.Millisecond)
	}
}

// textOf is the text of the element with the id, or what went wrong
// reading it: for messages only.
func (tb *Tab) textOf(id string) string {
	s, err := chromedp.Run(tb.ctx, chromedp.Evaluate[string](`(document.getElementById('`+id+`') || {}).textContent || ''`))
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return s
}

// CheckWidth fails the test when the page is wider than width pixels.
func (tb *Tab) CheckWidth(width int) {
	tb.t.Helper()
	if w := Eval[int](tb, `document.documentElement.scrollWidth`); w > width {
		tb.Shot("overflow")
		tb.t.Errorf("the page is %d px wide at a width of %d px", w, width)
	}
}

// Shot saves a full-page PNG into the screenshot folder, named after the
// test and name.
func (tb *Tab) Shot(name string) { tb.t.Helper(); tb.save(name, chromedp.FullScreenshot(100)) }

// ShotViewport saves what the viewport shows, for pages too long to read
// in one picture.
func (tb *Tab) ShotViewport(name string) { tb.t.Helper(); tb.save(name, chromedp.CaptureScreenshot()) }

func (tb *Tab) save(name string, capture chromedp.Action[[]byte]) {
	tb.t.Helper()
	buf, err := chromedp.Run(tb.ctx, capture)
	if err != nil {
		tb.t.Logf("screenshot %s: %v", name, err)
		return
	}
	file := filepath.Join(tb.b.shots, strings.NewReplacer("/", "-", " ", "-").Replace(tb.t.Name())+"-"+name+".png")
	if err := os.WriteFile(file, buf, 0o644); err != nil {
		tb.t.Fatal(err)
	}
}
