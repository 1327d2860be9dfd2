package client

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/keyledger/keyledger/schemas"
)

// Client calls keyledger's HTTP API with the admin key. It is safe for
// concurrent use. Every call is idempotent (a create carries an
// Idempotency-Key), so every call is retried on a network error, 429, 502,
// 503 and 504, with exponential backoff and jitter, honouring Retry-After.
type Client struct {
	base     string
	adminKey string
	hc       *http.Client
	retries  int
	backoff  time.Duration
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the http.Client calls go through (default: one with a
// 10 s timeout).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithRetries sets how many times a failed call is retried (default 3) and
// the first backoff (default 100 ms, doubling each time).
func WithRetries(n int, backoff time.Duration) Option {
	return func(c *Client) { c.retries, c.backoff = max(n, 0), backoff }
}

// New returns a client of the keyledger at baseURL (http://host:port).
func New(baseURL, adminKey string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("keyledger: base URL %q: want http(s)://host[:port]", baseURL)
	}
	if adminKey == "" {
		return nil, errors.New("keyledger: an admin key is required")
	}
	c := &Client{
		base: strings.TrimRight(baseURL, "/"), adminKey: adminKey,
		hc: &http.Client{Timeout: 10 * time.Second}, retries: 3, backoff: 100 * time.Millisecond,
	}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// ErrValueNotReturned comes with the key from CreateKey when the key was
// created but its value could not be returned: a retry of the same create
// reached the server after it stopped holding the value (only its hash is
// stored). Revoke that key and create another.
var ErrValueNotReturned = errors.New("keyledger: the key was created, but its value is no longer available")

// CreateKey creates a key in org and returns it with its value, which is
// never available again. idempotencyKey identifies the create across
// retries (the caller's own retries too); "" makes a random one.
func (c *Client) CreateKey(ctx context.Context, org string, req schemas.CreateAPIKeyRequest, idempotencyKey string) (*schemas.APIKey, error) {
	if idempotencyKey == "" {
		var raw [18]byte
		if _, err := crand.Read(raw[:]); err != nil {
			return nil, fmt.Errorf("keyledger: idempotency key: %w", err)
		}
		idempotencyKey = base64.RawURLEncoding.EncodeToString(raw[:])
	}
	var k schemas.APIKey
	hdr := http.Header{schemas.HeaderIdempotencyKey: {idempotencyKey}}
	if err := c.do(ctx, http.MethodPost, "/organizations/"+url.PathEscape(org)+"/api_keys", nil, hdr, req, &k); err != nil {
		return nil, err
	}
	if k.Value == nil {
		return &k, ErrValueNotReturned
	}
	return &k, nil
}

// ListQuery filters and pages a list of keys; zero fields are the API's
// defaults (10 keys, newest first, every status).
type ListQuery struct {
	UserID string
	Status string // active, revoked or expired
	Limit  int    // 1 to 100
	Order  string // asc or desc
	Before string // a key id: the page before it
	After  string // a key id: the page after it
}

func (q ListQuery) values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("user_id", q.UserID)
	set("status", q.Status)
	set("order", q.Order)
	set("before", q.Before)
	set("after", q.After)
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// ListKeys returns one page of org's keys.
func (c *Client) ListKeys(ctx context.Context, org string, q ListQuery) (*schemas.APIKeyList, error) {
	var page schemas.APIKeyList
	if err := c.do(ctx, http.MethodGet, "/organizations/"+url.PathEscape(org)+"/api_keys", q.values(), nil, nil, &page); err != nil {
		return nil, err
	}
	return &page, nil
}

// AllKeys iterates over every key of org that q selects, page after page
// (q.Before is ignored; q.After is where it starts). It stops at the first
// error, which it yields.
func (c *Client) AllKeys(ctx context.Context, org string, q ListQuery) iter.Seq2[schemas.APIKey, error] {
	return func(yield func(schemas.APIKey, error) bool) {
		q.Before = ""
		for {
			page, err := c.ListKeys(ctx, org, q)
			if err != nil {
				yield(schemas.APIKey{}, err)
				return
			}
			for _, k := range page.Data {
				if !yield(k, nil) {
					return
				}
			}
			if page.ListMetadata.After == nil || len(page.Data) == 0 {
				return
			}
			q.After = *page.ListMetadata.After
		}
	}
}

// GetKey returns a key by id.
func (c *Client) GetKey(ctx context.Context, id string) (*schemas.APIKey, error) {
	var k schemas.APIKey
	if err := c.do(ctx, http.MethodGet, "/api_keys/"+url.PathEscape(id), nil, nil, nil, &k); err != nil {
		return nil, err
	}
	return &k, nil
}

// RevokeKey revokes a key; reason is "" (requested) or one of the API's
// reasons. Revoking a revoked key returns it unchanged. When it returns,
// the server validates the key as revoked.
func (c *Client) RevokeKey(ctx context.Context, id, reason string) (*schemas.APIKey, error) {
	var body any
	if reason != "" {
		body = schemas.RevokeAPIKeyRequest{Reason: reason}
	}
	var k schemas.APIKey
	if err := c.do(ctx, http.MethodDelete, "/api_keys/"+url.PathEscape(id), nil, nil, body, &k); err != nil {
		return nil, err
	}
	return &k, nil
}

// Validate asks the server whether value is a usable key. A key that is
// not usable is an answer (APIKey nil, Reason set), not an error.
func (c *Client) Validate(ctx context.Context, value string) (*schemas.ValidateResponse, error) {
	var out schemas.ValidateResponse
	if err := c.do(ctx, http.MethodPost, "/api_keys/validations", nil, nil, schemas.ValidateRequest{Value: value}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Permissions returns the catalogue of permissions keys may carry.
func (c *Client) Permissions(ctx context.Context) ([]string, error) {
	var out schemas.PermissionsBody
	if err := c.do(ctx, http.MethodGet, "/api_key_permissions", nil, nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Permissions, nil
}

// SetPermissions replaces the catalogue and returns it as stored.
func (c *Client) SetPermissions(ctx context.Context, perms []string) ([]string, error) {
	if perms == nil {
		perms = []string{}
	}
	var out schemas.PermissionsBody
	if err := c.do(ctx, http.MethodPut, "/api_key_permissions", nil, nil, schemas.PermissionsBody{Permissions: perms}, &out); err != nil {
		return nil, err
	}
	return out.Permissions, nil
}

// RemoveMember records that a user left org, revoking every key they own
// there, in one atomic step.
func (c *Client) RemoveMember(ctx context.Context, org, userID string) (*schemas.MemberRemoval, error) {
	var out schemas.MemberRemoval
	if err := c.do(ctx, http.MethodDelete, "/organizations/"+url.PathEscape(org)+"/members/"+url.PathEscape(userID), nil, nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// maxAnswer bounds what the client reads of one answer.
const maxAnswer = 8 << 20

// do sends one call, retrying what may be retried, and decodes a 2xx
// answer into out.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, hdr http.Header, body, out any) error {
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return fmt.Errorf("keyledger: encode request: %w", err)
		}
	}
	target := c.base + path
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	for attempt := 0; ; attempt++ {
		wait, err := c.once(ctx, method, target, hdr, raw, out)
		if err == nil || wait < 0 || attempt >= c.retries {
			return err
		}
		backoff := c.backoff << attempt
		backoff = backoff/2 + time.Duration(rand.Int64N(int64(backoff/2)+1)) // jitter
		wait = max(wait, backoff)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("keyledger: %s %s: %w (after %v)", method, path, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// once sends one attempt. wait is < 0 when the error is final, else at
// least how long to wait before trying again.
func (c *Client) once(ctx context.Context, method, target string, hdr http.Header, raw []byte, out any) (wait time.Duration, _ error) {
	var rd io.Reader
	if raw != nil {
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return -1, fmt.Errorf("keyledger: %w", err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+c.adminKey)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "keyledger-go-client")
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return -1, fmt.Errorf("keyledger: %w", ctx.Err())
		}
		return 0, fmt.Errorf("keyledger: %s %s: %w", method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return 0, fmt.Errorf("keyledger: %s %s: read answer: %w", method, req.URL.Path, err)
	}
	if len(body) > maxAnswer {
		return -1, fmt.Errorf("keyledger: %s %s: answer larger than %d bytes", method, req.URL.Path, maxAnswer)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if out == nil {
			return 0, nil
		}
		if err := json.Unmarshal(body, out); err != nil {
			return -1, fmt.Errorf("keyledger: %s %s: decode answer: %w", method, req.URL.Path, err)
		}
		return 0, nil
	}
	apiErr := &Error{Status: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After")}
	var e schemas.Error
	if json.Unmarshal(body, &e) == nil && e.Code != "" {
		apiErr.Code, apiErr.Message = e.Code, e.Message
	} else {
		apiErr.Code, apiErr.Message = "http_"+strconv.Itoa(resp.StatusCode), http.StatusText(resp.StatusCode)
	}
	if apiErr.Code == "too_many_failed_validations" {
		return -1, apiErr // an answer about the presented keys, not an outage
	}
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return retryAfter(apiErr.RetryAfter), apiErr
	}
	return -1, apiErr
}

// retryAfter reads a Retry-After of seconds, capped at 30 s.
func retryAfter(v string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return 0
	}
	return min(time.Duration(n)*time.Second, 30*time.Second)
}

// EventsQuery selects events of the feed; zero fields are the API's
// defaults (every type and organization, 10 events, from the start).
type EventsQuery struct {
	Types          []string
	OrganizationID string
	After          string // a cursor from a page's list_metadata.after
	Limit          int
	RangeStart     time.Time
	RangeEnd       time.Time
}

// Events returns one page of the events feed, in ledger order.
func (c *Client) Events(ctx context.Context, q EventsQuery) (*schemas.EventList, error) {
	v := url.Values{}
	if len(q.Types) > 0 {
		v.Set("events", strings.Join(q.Types, ","))
	}
	if q.OrganizationID != "" {
		v.Set("organization_id", q.OrganizationID)
	}
	if q.After != "" {
		v.Set("after", q.After)
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if !q.RangeStart.IsZero() {
		v.Set("range_start", q.RangeStart.UTC().Format(time.RFC3339Nano))
	}
	if !q.RangeEnd.IsZero() {
		v.Set("range_end", q.RangeEnd.UTC().Format(time.RFC3339Nano))
	}
	var page schemas.EventList
	if err := c.do(ctx, http.MethodGet, "/events", v, nil, nil, &page); err != nil {
		return nil, err
	}
	return &page, nil
}
