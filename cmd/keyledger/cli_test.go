package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"testing"

	"github.com/keyledger/keyledger/schemas"
)

func runCmd(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), args, &out, io.Discard)
	return out.Bytes(), err
}

// The CLI drives a running server: set the catalogue, create, list,
// validate, revoke, validate again.
func TestCLI(t *testing.T) {
	s := startServer(t, t.TempDir())
	t.Setenv("KEYLEDGER_URL", s.url)
	t.Setenv("KEYLEDGER_ADMIN_KEY", testAdminKey)

	if _, err := runCmd(t, "permissions", "set", "projects:read,tasks:read"); err != nil {
		t.Fatal(err)
	}
	out, err := runCmd(t, "keys", "create", "--org", "org_cli", "--name", "from the cli", "--permissions", "projects:read", "--user", "user_1")
	if err != nil {
		t.Fatalf("create: %v\n%s", err, out)
	}
	var k schemas.APIKey
	if err := json.Unmarshal(out, &k); err != nil || k.Value == nil || k.UserID == nil || *k.UserID != "user_1" {
		t.Fatalf("create printed %s (%v)", out, err)
	}
	if out, err := runCmd(t, "validate", *k.Value); err != nil {
		t.Fatalf("validate a live key: %v\n%s", err, out)
	}
	out, err = runCmd(t, "keys", "list", "--org", "org_cli", "--user", "user_1")
	var list schemas.APIKeyList
	if err != nil || json.Unmarshal(out, &list) != nil || len(list.Data) != 1 || list.Data[0].ID != k.ID {
		t.Fatalf("list: %v\n%s", err, out)
	}
	if out, err := runCmd(t, "keys", "revoke", k.ID, "--reason", "leaked"); err != nil {
		t.Fatalf("revoke: %v\n%s", err, out)
	}
	out, err = runCmd(t, "validate", *k.Value)
	var ee exitError
	if !errors.As(err, &ee) || ee != 1 {
		t.Fatalf("validate a revoked key: err %v, want exit status 1\n%s", err, out)
	}
	var v schemas.ValidateResponse
	if json.Unmarshal(out, &v) != nil || v.Reason != "revoked" {
		t.Fatalf("validate printed %s", out)
	}
	if _, err := runCmd(t, "keys", "create", "--org", "org_cli", "--name", "x", "--permissions", "admin:all"); !errors.As(err, &ee) {
		t.Fatalf("a refused create must fail: %v", err)
	}
	if _, err := runCmd(t, "keys", "create", "--name", "no org"); !errors.Is(err, errUsage) {
		t.Fatalf("missing --org: %v, want a usage error", err)
	}
}
