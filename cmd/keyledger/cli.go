package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/keyledger/keyledger/schemas"
)

// cli talks to a running keyledger over its HTTP API.
type cli struct {
	base   string
	admin  string
	stdout io.Writer
	http   *http.Client
}

func runCLI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := &cli{
		base:   strings.TrimRight(env("KEYLEDGER_URL", "http://127.0.0.1:8080"), "/"),
		admin:  os.Getenv("KEYLEDGER_ADMIN_KEY"),
		stdout: stdout,
		http:   &http.Client{Timeout: 30 * time.Second},
	}
	if c.admin == "" {
		fmt.Fprintln(stderr, "KEYLEDGER_ADMIN_KEY is not set")
		return errUsage
	}
	cmd := args[0]
	if cmd != "validate" {
		if len(args) < 2 {
			fmt.Fprint(stderr, usage)
			return errUsage
		}
		cmd += " " + args[1]
		args = args[2:]
	} else {
		args = args[1:]
	}
	fs := flag.NewFlagSet("keyledger "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	org := fs.String("org", "", "organization id")
	user := fs.String("user", "", "user id (a user key, or a filter)")
	name := fs.String("name", "", "key name")
	perms := fs.String("permissions", "", "comma-separated permissions")
	expires := fs.String("expires-at", "", "expiry, RFC 3339")
	status := fs.String("status", "", "active, revoked or expired")
	limit := fs.Int("limit", 0, "page size, 1-100")
	after := fs.String("after", "", "cursor: list keys after this id")
	reason := fs.String("reason", "", "revocation reason")
	idem := fs.String("idempotency-key", "", "makes a retried create return the same key")
	types := fs.String("type", "", "events: comma-separated event types")
	every := fs.Duration("poll", 500*time.Millisecond, "events tail: how often to ask for new events")
	hookURL := fs.String("url", "", "webhooks: the endpoint's URL")
	hookEvents := fs.String("events", "", "webhooks: comma-separated event types it receives")
	since := fs.String("since", "", "webhooks recover: start of the range, RFC 3339")
	until := fs.String("until", "", "webhooks recover: end of the range, RFC 3339 (default now)")
	// Flags may follow positional arguments: keyledger keys revoke ID --reason leaked.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return errUsage
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	needPos := func(n int) error {
		if len(pos) != n {
			fmt.Fprintf(stderr, "keyledger %s: expected %d argument(s)\n", cmd, n)
			return errUsage
		}
		return nil
	}
	switch cmd {
	case "keys create":
		if *org == "" || *name == "" {
			fmt.Fprintln(stderr, "keyledger keys create: --org and --name are required")
			return errUsage
		}
		req := schemas.CreateAPIKeyRequest{Name: *name, UserID: *user, Permissions: splitList(*perms)}
		if *expires != "" {
			t, err := time.Parse(time.RFC3339, *expires)
			if err != nil {
				return fmt.Errorf("--expires-at: %w", err)
			}
			req.ExpiresAt = &t
		}
		h := http.Header{}
		if *idem != "" {
			h.Set(schemas.HeaderIdempotencyKey, *idem)
		}
		return c.do(ctx, http.MethodPost, "/organizations/"+url.PathEscape(*org)+"/api_keys", req, h)
	case "keys list":
		if *org == "" {
			fmt.Fprintln(stderr, "keyledger keys list: --org is required")
			return errUsage
		}
		q := url.Values{}
		for k, v := range map[string]string{"user_id": *user, "status": *status, "after": *after} {
			if v != "" {
				q.Set(k, v)
			}
		}
		if *limit > 0 {
			q.Set("limit", fmt.Sprint(*limit))
		}
		path := "/organizations/" + url.PathEscape(*org) + "/api_keys"
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
		return c.do(ctx, http.MethodGet, path, nil, nil)
	case "keys get":
		if err := needPos(1); err != nil {
			return err
		}
		return c.do(ctx, http.MethodGet, "/api_keys/"+url.PathEscape(pos[0]), nil, nil)
	case "keys revoke":
		if err := needPos(1); err != nil {
			return err
		}
		var body any
		if *reason != "" {
			body = schemas.RevokeAPIKeyRequest{Reason: *reason}
		}
		return c.do(ctx, http.MethodDelete, "/api_keys/"+url.PathEscape(pos[0]), body, nil)
	case "validate":
		if err := needPos(1); err != nil {
			return err
		}
		var out schemas.ValidateResponse
		if err := c.call(ctx, http.MethodPost, "/api_keys/validations", schemas.ValidateRequest{Value: pos[0]}, nil, &out); err != nil {
			return err
		}
		if out.APIKey == nil {
			return exitError(1)
		}
		return nil
	case "permissions get":
		return c.do(ctx, http.MethodGet, "/api_key_permissions", nil, nil)
	case "permissions set":
		if err := needPos(1); err != nil {
			return err
		}
		return c.do(ctx, http.MethodPut, "/api_key_permissions", schemas.PermissionsBody{Permissions: splitList(pos[0])}, nil)
	case "events list", "events tail":
		q := url.Values{}
		for k, v := range map[string]string{"events": *types, "organization_id": *org, "after": *after} {
			if v != "" {
				q.Set(k, v)
			}
		}
		if *limit > 0 {
			q.Set("limit", fmt.Sprint(*limit))
		}
		if cmd == "events list" {
			return c.do(ctx, http.MethodGet, "/events?"+q.Encode(), nil, nil)
		}
		return c.tail(ctx, q, *every)
	case "webhooks create":
		if *hookURL == "" || *hookEvents == "" {
			fmt.Fprintln(stderr, "keyledger webhooks create: --url and --events are required")
			return errUsage
		}
		return c.do(ctx, http.MethodPost, "/webhook_endpoints", schemas.CreateWebhookEndpointRequest{URL: *hookURL, Events: splitList(*hookEvents)}, nil)
	case "webhooks list":
		return c.do(ctx, http.MethodGet, "/webhook_endpoints", nil, nil)
	case "webhooks get", "webhooks delete", "webhooks rotate-secret", "webhooks attempts", "webhooks enable", "webhooks disable", "webhooks update":
		if err := needPos(1); err != nil {
			return err
		}
		path := "/webhook_endpoints/" + url.PathEscape(pos[0])
		switch cmd {
		case "webhooks get":
			return c.do(ctx, http.MethodGet, path, nil, nil)
		case "webhooks delete":
			return c.do(ctx, http.MethodDelete, path, nil, nil)
		case "webhooks rotate-secret":
			return c.do(ctx, http.MethodPost, path+"/rotate_secret", nil, nil)
		case "webhooks attempts":
			if *limit > 0 {
				path += "?limit=" + fmt.Sprint(*limit)
			}
			return c.do(ctx, http.MethodGet, path+"/attempts", nil, nil)
		case "webhooks enable", "webhooks disable":
			status := strings.TrimPrefix(cmd, "webhooks ") + "d"
			return c.do(ctx, http.MethodPatch, path, schemas.UpdateWebhookEndpointRequest{Status: &status}, nil)
		}
		var req schemas.UpdateWebhookEndpointRequest
		if *hookURL != "" {
			req.URL = hookURL
		}
		if *hookEvents != "" {
			req.Events = splitList(*hookEvents)
		}
		return c.do(ctx, http.MethodPatch, path, req, nil)
	case "webhooks recover":
		if err := needPos(1); err != nil {
			return err
		}
		req := schemas.RecoverRequest{RangeEnd: time.Now().UTC()}
		var err error
		if req.RangeStart, err = time.Parse(time.RFC3339, *since); err != nil {
			fmt.Fprintln(stderr, "keyledger webhooks recover: --since is required, RFC 3339")
			return errUsage
		}
		if *until != "" {
			if req.RangeEnd, err = time.Parse(time.RFC3339, *until); err != nil {
				return fmt.Errorf("--until: %w", err)
			}
		}
		return c.do(ctx, http.MethodPost, "/webhook_endpoints/"+url.PathEscape(pos[0])+"/recover", req, nil)
	case "members remove":
		if *org == "" || *user == "" {
			fmt.Fprintln(stderr, "keyledger members remove: --org and --user are required")
			return errUsage
		}
		return c.do(ctx, http.MethodDelete, "/organizations/"+url.PathEscape(*org)+"/members/"+url.PathEscape(*user), nil, nil)
	}
	fmt.Fprint(stderr, usage)
	return errUsage
}

// tail follows the events feed from q's cursor (the start of the ledger
// when none), printing each event as a JSON line, until ctx ends.
func (c *cli) tail(ctx context.Context, q url.Values, every time.Duration) error {
	if q.Get("limit") == "" {
		q.Set("limit", "100")
	}
	enc := json.NewEncoder(c.stdout)
	quiet := *c // pages are not printed, their events are
	quiet.stdout = io.Discard
	for {
		var page schemas.EventList
		if err := quiet.call(ctx, http.MethodGet, "/events?"+q.Encode(), nil, nil, &page); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for _, e := range page.Data {
			if err := enc.Encode(e); err != nil {
				return err
			}
		}
		if page.ListMetadata.After != nil {
			q.Set("after", *page.ListMetadata.After)
		}
		if len(page.Data) > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(every):
		}
	}
}

func (c *cli) do(ctx context.Context, method, path string, body any, h http.Header) error {
	return c.call(ctx, method, path, body, h, nil)
}

// call sends one request, prints the JSON answer indented, and decodes it
// into out when given. A 4xx or 5xx answer is an error after printing.
func (c *cli) call(ctx context.Context, method, path string, body any, h http.Header, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+c.admin)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, raw, "", "  ") == nil {
		raw = pretty.Bytes()
	}
	fmt.Fprintln(c.stdout, strings.TrimSpace(string(raw)))
	if resp.StatusCode >= 400 {
		return exitError(1)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

func splitList(s string) []string {
	out := []string{}
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
