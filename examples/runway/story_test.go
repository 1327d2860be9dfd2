package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/client"
	"github.com/keyledger/keyledger/internal/ledgertest"
	"github.com/keyledger/keyledger/schemas"
)

func TestMain(m *testing.M) { os.Exit(ledgertest.Main(m)) }

// fenced returns the body of the fenced block between two HTML comments.
func fenced(t *testing.T, readme, begin, end string) string {
	t.Helper()
	re := regexp.MustCompile("(?s)<!-- " + begin + " -->\\s*```[a-z]*\\n(.*?)```\\s*<!-- " + end + " -->")
	m := re.FindStringSubmatch(readme)
	if m == nil {
		t.Fatalf("README.md has no block between <!-- %s --> and <!-- %s -->", begin, end)
	}
	return m[1]
}

// startRunway builds and runs Runway as the README runs it, with args.
func startRunway(t *testing.T, env []string, args ...string) (addr string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "runway")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	addr = ledgertest.FreeAddr(t)
	cmd := exec.Command(bin, append(args, "--addr", addr)...)
	cmd.Env = append(os.Environ(), env...)
	out := &ledgertest.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("runway's output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		// Any answer means it serves; without a key it is 401.
		resp, err := http.Get("http://" + addr + "/api/projects")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				return addr
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("runway did not start: %v\n%s", err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStoryAsTheREADMETellsIt runs the README's story block with bash and
// curl against a real keyledger and Runway validating over HTTP, and
// compares what it prints with the README's.
func TestStoryAsTheREADMETellsIt(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("the story needs curl (scripts/test.sh installs it)")
	}
	raw, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	story := fenced(t, readme, "story:begin", "story:end")
	want := fenced(t, readme, "expected:begin", "expected:end")
	if !strings.Contains(readme, "go run ./examples/runway --keyledger http://127.0.0.1:8080 --addr 127.0.0.1:8081") {
		t.Fatal("the README no longer runs Runway the way this test does")
	}

	kl := ledgertest.Start(t)
	addr := startRunway(t, []string{"KEYLEDGER_ADMIN_KEY=" + ledgertest.AdminKey}, "--keyledger", kl.URL())
	for old, addr := range map[string]string{"127.0.0.1:8080": kl.HTTPAddr, "127.0.0.1:8081": addr} {
		if !strings.Contains(story, old) {
			t.Fatalf("the story no longer uses %s", old)
		}
		story = strings.ReplaceAll(story, old, addr)
	}
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", story)
	cmd.Env = append(os.Environ(), "KEYLEDGER_ADMIN_KEY="+ledgertest.AdminKey)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	got, err := cmd.Output()
	if err != nil {
		t.Fatalf("the story failed: %v\n%s%s", err, got, stderr.String())
	}
	if string(got) != want {
		t.Fatalf("the story printed\n%s\nthe README says\n%s", got, want)
	}
}

// TestStoryWithTheEmbeddedValidator runs the same story against Runway
// validating in-process, and measures how long after keyledger answers a
// revoke Runway refuses the key: it must within the validator's 5 s bound.
func TestStoryWithTheEmbeddedValidator(t *testing.T) {
	kl := ledgertest.Start(t)
	addr := startRunway(t, []string{"KEYLEDGER_NATS_VALIDATOR_PASSWORD=" + ledgertest.ValidatorPassword},
		"--embedded-validator", "--nats-url", kl.NATSURL())
	ctx := context.Background()
	c, err := client.New(kl.URL(), ledgertest.AdminKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetPermissions(ctx, []string{"projects:read", "projects:write", "tasks:read", "tasks:write"}); err != nil {
		t.Fatal(err)
	}
	k, err := c.CreateKey(ctx, "org_acme", schemas.CreateAPIKeyRequest{Name: "CI (read-only)", Permissions: []string{"projects:read"}, UserID: "user_ada"}, "")
	if err != nil {
		t.Fatal(err)
	}
	call := func(method, path string) int {
		req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(`{"name":"Launch"}`))
		req.Header.Set("Authorization", "Bearer "+*k.Value)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// The key was created a moment ago: the validator may take a few
	// milliseconds to apply it, so wait for its first 200.
	deadline := time.Now().Add(5 * time.Second)
	for call("GET", "/api/projects") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("the new key never worked through the embedded validator")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if s := call("POST", "/api/projects"); s != http.StatusForbidden {
		t.Fatalf("POST /api/projects: %d, want 403", s)
	}
	if _, err := c.RevokeKey(ctx, k.ID, "leaked"); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	for {
		s := call("GET", "/api/projects")
		if s == http.StatusUnauthorized {
			break
		}
		if s != http.StatusOK || time.Since(revoked) > 5*time.Second {
			t.Fatalf("after the revoke: %d, %v later", s, time.Since(revoked))
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("refused by the embedded validator %v after keyledger answered the revoke", time.Since(revoked))
}
