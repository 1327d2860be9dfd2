package web

import (
	"context"
	"fmt"
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
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// The browser harness of this package's tests: headless Chromium through
// chromedp, one browser per test, one tab per subtest. Every tab fails its
// test when the page makes a request to another host than 127.0.0.1, breaks
// its Content-Security-Policy, or throws.

// chromiumPath is KEYLEDGER_CHROMIUM, /usr/bin/chromium, or a Chromium or
// Chrome on PATH. The tests fail, never skip, without one: scripts/test.sh
// installs Debian's chromium.
func chromiumPath(t testing.TB) string {
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

// startBrowser starts a headless Chromium with a fresh profile that lives
// as long as the test.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
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
		t.Fatalf("start %s: %v", chromiumPath(t), err)
	}
	return bctx
}

// cspWatch turns every securitypolicyviolation event into a console error
// the tab's listener sees. DevTools injects it, so the page's CSP does not
// apply to it.
const cspWatch = `document.addEventListener('securitypolicyviolation', function (e) {
  console.error('CSP violation: ' + e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline') + ' at ' + e.sourceFile + ':' + e.lineNumber);
}, true);`

type tab struct {
	t     *testing.T
	ctx   context.Context
	shots string

	mu       sync.Mutex
	problems []string
	hosts    map[string]bool
}

// openTab opens a tab in the browser of bctx for at most timeout.
func openTab(t *testing.T, bctx context.Context, timeout time.Duration) *tab {
	t.Helper()
	tb := &tab{t: t, hosts: map[string]bool{}, shots: screenshotDir(t)}
	t.Cleanup(func() {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		for _, p := range tb.problems {
			t.Error(p)
		}
	})
	ctx, cancelTab := chromedp.NewContext(bctx, chromedp.WithListener(tb.listen))
	t.Cleanup(cancelTab)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	t.Cleanup(cancel)
	tb.ctx = ctx
	tb.do(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: cspWatch})
		return err
	}))
	return tb
}

// listen runs in the tab's event loop: it only records.
func (tb *tab) listen(ev any) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
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
		tb.hosts[u.Host] = true
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
		text := strings.Join(parts, " ")
		if strings.Contains(text, "CSP violation") || strings.Contains(text, "Content Security Policy") {
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

func (tb *tab) do(steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	if err := chromedp.Do(tb.ctx, steps...); err != nil {
		tb.t.Fatal(err)
	}
}

func (tb *tab) navigate(u string) { tb.t.Helper(); tb.do(chromedp.Navigate(u)) }

func (tb *tab) click(sel string) {
	tb.t.Helper()
	tb.do(chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

func (tb *tab) typeInto(sel, text string) {
	tb.t.Helper()
	tb.do(chromedp.SendKeys(chromedp.CSS(sel), text, chromedp.NodeVisible))
}

func (tb *tab) key(k string) { tb.t.Helper(); tb.do(chromedp.KeyEvent(k)) }

func (tb *tab) escape() { tb.t.Helper(); tb.key(kb.Escape) }

func evalIn[T any](tb *tab, expr string) T {
	tb.t.Helper()
	v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

func (tb *tab) str(expr string) string { tb.t.Helper(); return evalIn[string](tb, expr) }
func (tb *tab) bool(expr string) bool  { tb.t.Helper(); return evalIn[bool](tb, "!!("+expr+")") }

// waitFor polls a JavaScript condition (chromedp.Poll compiles its predicate
// with new Function, which the page's CSP refuses).
func (tb *tab) waitFor(what, cond string) {
	tb.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, err := chromedp.Run(tb.ctx, chromedp.Evaluate[bool]("!!("+cond+")"))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) || tb.ctx.Err() != nil {
			tb.shot("timeout")
			tb.t.Fatalf("waiting for %s (%s): err %v; alert %q, status %q", what, cond, err,
				evalIn[string](tb, `document.getElementById('alert') ? document.getElementById('alert').textContent : ''`),
				evalIn[string](tb, `document.getElementById('status') ? document.getElementById('status').textContent : ''`))
		}
		time.Sleep(15 * time.Millisecond)
	}
}

// shot saves a full-page PNG into the screenshot folder.
func (tb *tab) shot(name string) { tb.t.Helper(); tb.save(name, chromedp.FullScreenshot(100)) }

// shotViewport saves what the viewport shows, for pages too long to read
// in one picture.
func (tb *tab) shotViewport(name string) { tb.t.Helper(); tb.save(name, chromedp.CaptureScreenshot()) }

func (tb *tab) save(name string, capture chromedp.Action[[]byte]) {
	tb.t.Helper()
	buf, err := chromedp.Run(tb.ctx, capture)
	if err != nil {
		tb.t.Logf("screenshot %s: %v", name, err)
		return
	}
	file := filepath.Join(tb.shots, strings.NewReplacer("/", "-", " ", "-").Replace(tb.t.Name())+"-"+name+".png")
	if err := os.WriteFile(file, buf, 0o644); err != nil {
		tb.t.Fatal(err)
	}
}

func screenshotDir(t *testing.T) string {
	if d := os.Getenv("KEYLEDGER_UI_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}
