// Package ledgertest runs the real `keyledger serve` program for tests of
// the packages that talk to it (client, embedded, examples): built once per
// test binary, run as a child process on loopback ports, its NATS server
// listening for embedded validators.
package ledgertest

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/keyledger/keyledger/client"
	"github.com/keyledger/keyledger/schemas"
)

// Credentials every test server is started with.
const (
	AdminKey          = "kl_admin_ledgertest_0123456789abcdef"
	ValidatorPassword = "validator_ledgertest_0123456789abcdef"
)

var build struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// Main runs a package's tests and removes the built program afterwards:
// func TestMain(m *testing.M) { os.Exit(ledgertest.Main(m)) }.
func Main(m *testing.M) int {
	code := m.Run()
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
	return code
}

// Binary builds cmd/keyledger once per test binary and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "ledgertest-")
		if build.err != nil {
			return
		}
		build.bin = filepath.Join(build.dir, "keyledger")
		out, err := exec.Command("go", "build", "-o", build.bin, "github.com/keyledger/keyledger/cmd/keyledger").CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("go build cmd/keyledger: %v\n%s", err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin
}

// Server is a running `keyledger serve`.
type Server struct {
	t        testing.TB
	Dir      string
	HTTPAddr string
	NATSAddr string
	cmd      *exec.Cmd
	out      *SyncBuffer
}

// Start starts keyledger on a fresh data folder and free loopback ports.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, Dir: t.TempDir(), HTTPAddr: FreeAddr(t), NATSAddr: FreeAddr(t)}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// URL is the HTTP API's base URL.
func (s *Server) URL() string { return "http://" + s.HTTPAddr }

// NATSURL is the embedded NATS server's URL.
func (s *Server) NATSURL() string { return "nats://" + s.NATSAddr }

// Output is what the server printed so far.
func (s *Server) Output() string { return s.out.String() }

// Start (re)starts the server on its folder and ports, and waits until it
// is ready.
func (s *Server) Start() {
	s.t.Helper()
	if s.cmd != nil {
		s.t.Fatal("ledgertest: already running")
	}
	cmd := exec.Command(Binary(s.t), "serve", "--data", s.Dir, "--http", s.HTTPAddr, "--nats-listen", s.NATSAddr)
	cmd.Env = append(os.Environ(), "KEYLEDGER_ADMIN_KEY="+AdminKey,
		"KEYLEDGER_NATS_VALIDATOR_PASSWORD="+ValidatorPassword, "KEYLEDGER_LOG_LEVEL=warn")
	s.out = &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.URL() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			s.Stop()
			s.t.Fatalf("ledgertest: keyledger not ready: %v\n%s", err, s.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops the server with SIGTERM (an orderly shutdown) and waits.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			s.t.Errorf("ledgertest: keyledger exited with %v\n%s", err, s.Output())
		}
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
		s.t.Errorf("ledgertest: keyledger did not stop on SIGTERM\n%s", s.Output())
	}
	s.cmd = nil
}

// FreeAddr returns a loopback address that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// SyncBuffer is a bytes.Buffer safe for a child process and a test to
// share.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Client returns a client of the server with the admin key.
func (s *Server) Client(t testing.TB, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(s.URL(), AdminKey, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Seed sets the catalogue to perms and creates an organization key of org
// carrying them all; it returns the key's id and value.
func (s *Server) Seed(t testing.TB, org string, perms ...string) (id, value string) {
	t.Helper()
	c := s.Client(t)
	ctx := context.Background()
	if _, err := c.SetPermissions(ctx, perms); err != nil {
		t.Fatal(err)
	}
	k, err := c.CreateKey(ctx, org, schemas.CreateAPIKeyRequest{Name: "seed", Permissions: perms}, "")
	if err != nil {
		t.Fatal(err)
	}
	return k.ID, *k.Value
}

// BenchMiddleware measures one request for a route guarded by
// projects:read through the middleware validating with v, value being a
// key that carries it; the application's handler does nothing.
func BenchMiddleware(b *testing.B, v client.Validator, value string) {
	h := client.NewMiddleware(v, nil).Protect("projects:read", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	}))
	req := httptest.NewRequest("GET", "/api/projects", nil)
	req.Header.Set("Authorization", "Bearer "+value)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code, w.Body.String())
		}
	}
}

// Schema compiles one of the project's JSON Schemas (a path in
// schemas.Files, such as "public/event.json"), formats asserted.
func Schema(t testing.TB, path string) *jsonschema.Schema {
	t.Helper()
	raw, err := fs.ReadFile(schemas.Files, path)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	url := "https://keyledger.dev/schemas/" + path
	if err := c.AddResource(url, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(url)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
