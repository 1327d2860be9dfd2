package browsertest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is a test whose errors are written down instead of failing it.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (r *recorder) Error(args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprint(args...))
}

// TestGuards shows that every guard fails the tab's test: a request off
// 127.0.0.1, a CSP violation, an uncaught exception; and that Expect
// counts what it is told to expect instead.
func TestGuards(t *testing.T) {
	mux := http.NewServeMux()
	page := func(body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src *")
			io.WriteString(w, `<!doctype html><html lang="en"><title>t</title><div id="alert">a</div>`+body+`</html>`)
		}
	}
	mux.HandleFunc("GET /clean", page(`<p id="ok">fine</p>`))
	mux.HandleFunc("GET /external", page(`<img src="http://keyledger-browsertest.invalid/x.png" alt="">`))
	mux.HandleFunc("GET /inline", page(`<script>document.title = 'ran'</script>`))
	mux.HandleFunc("GET /throws", page(`<script src="/throw.js"></script>`))
	mux.HandleFunc("GET /throw.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		io.WriteString(w, `throw new Error('browsertest boom');`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	b := Start(t, Options{TabTimeout: 20 * time.Second})

	visit := func(path, cond string) []string {
		t.Helper()
		var rec *recorder
		t.Run(strings.TrimPrefix(path, "/"), func(t *testing.T) {
			rec = &recorder{TB: t}
			tb := b.Open(rec)
			tb.Navigate(srv.URL + path)
			tb.WaitFor("the page", cond)
			time.Sleep(200 * time.Millisecond) // for late events
		})
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return rec.errors
	}
	if errs := visit("/clean", `document.getElementById('ok')`); len(errs) != 0 {
		t.Errorf("a clean page: %q", errs)
	}
	for _, c := range []struct{ path, want string }{
		{"/external", "request off 127.0.0.1: GET http://keyledger-browsertest.invalid/x.png"},
		{"/inline", "CSP violation: script-src"},
		{"/throws", "uncaught exception"},
	} {
		errs := visit(c.path, `document.readyState === 'complete'`)
		if !strings.Contains(strings.Join(errs, "\n"), c.want) {
			t.Errorf("%s: the tab reported %q, want %q", c.path, errs, c.want)
		}
	}
	if hosts := b.Hosts(); len(hosts) != 2 || !hosts["keyledger-browsertest.invalid"] || !hosts[strings.TrimPrefix(srv.URL, "http://")] {
		t.Errorf("hosts seen: %v", hosts)
	}

	t.Run("Expect", func(t *testing.T) {
		rec := &recorder{TB: t}
		t.Cleanup(func() { // after the tab's own cleanup, which reports
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if len(rec.errors) != 0 {
				t.Errorf("an expected problem failed the test: %q", rec.errors)
			}
		})
		tb := b.Open(rec)
		tb.Expect("script-src")
		tb.Navigate(srv.URL + "/inline")
		for deadline := time.Now().Add(5 * time.Second); tb.Expected() == 0; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the expected CSP violation was not counted")
			}
		}
		if tb.Str(`document.title`) == "ran" {
			t.Error("the inline script ran")
		}
	})
}
