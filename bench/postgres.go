package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keyledger/keyledger/api"
	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/schemas"
)

const (
	pgScenario = "validate-postgres"
	pgTarget   = "≥ 3× and lower p99"
	// pgCopyChunk is how many rows one COPY carries: progress is reported
	// between chunks.
	pgCopyChunk = 50_000
	// pgStmt is the name of the prepared lookup on every pooled connection.
	pgStmt = "validate_api_key"
	// pgCheckBodies is how many bodies of the mix both services answer
	// before the measurement, to check that they answer alike.
	pgCheckBodies = 256
)

// pgLookupSQL is the PostgreSQL service's one query: an index lookup by the
// key's hash, the primary key.
const pgLookupSQL = `SELECT id, organization_id, owner_type, owner_id, name, obfuscated_value,
	permissions, status, expires_at, created_at, updated_at, last_used_at
	FROM api_keys WHERE hash = $1`

// validatePostgres measures keyledger's validation endpoint against what a
// user would build instead: a small Go HTTP service with the same endpoint,
// authentication, request and answer, whose handler looks the key's hash up
// in an indexed PostgreSQL table through a pool of connections with a
// prepared statement. Both hold the same keys and are driven by the same
// load generator with the same connections and bodies, alternating.
func validatePostgres(ctx context.Context, o Options, p Progress) ([]Result, error) {
	if o.PostgresDSN == "" {
		return []Result{{Scenario: pgScenario, Target: pgTarget,
			Skipped: "no PostgreSQL: run scripts/postgres.sh and pass --postgres-dsn"}}, nil
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	conns := max(o.HTTPConns, 1)

	// Fail before the long population step if the server is not there.
	loadConn, err := pgx.Connect(ctx, o.PostgresDSN)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer loadConn.Close(context.Background())
	var version string
	if err := loadConn.QueryRow(ctx, "SHOW server_version").Scan(&version); err != nil {
		return nil, fmt.Errorf("PostgreSQL: %w", err)
	}

	pop, err := Populate(ctx, filepath.Join(o.Dir, "postgres"), o.Keys, p)
	if err != nil {
		return nil, err
	}
	defer pop.Close()
	if len(pop.Values) <= pop.Revoked {
		return nil, errors.New("no active keys to validate")
	}

	load, err := pgLoad(ctx, loadConn, pop, p)
	if err != nil {
		return nil, fmt.Errorf("load PostgreSQL: %w", err)
	}
	loadConn.Close(ctx)

	// keyledger: the real API handler over the population, served as
	// validate-http serves it.
	adminHash := sha256.Sum256([]byte(httpAdminKey))
	klHandler := api.New(api.Config{Queries: pop.Proj, AdminKeyHash: adminHash, Log: slog.New(slog.DiscardHandler)})
	klURL, stopKL, err := httpServeLoopback(klHandler, log)
	if err != nil {
		return nil, err
	}
	defer stopKL()
	klURL += "/api_keys/validations"

	// The PostgreSQL-backed service, on a pool as large as the load
	// generator's connections: no request ever waits for a connection.
	pool, err := pgOpenPool(ctx, o.PostgresDSN, conns)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	pgURL, stopPG, err := httpServeLoopback(newPGService(pool, adminHash, log), log)
	if err != nil {
		return nil, err
	}
	defer stopPG()
	pgURL += "/api_keys/validations"

	header := http.Header{}
	header.Set("Authorization", "Bearer "+httpAdminKey)
	header.Set("Content-Type", "application/json")
	bodies := make([][]byte, len(pop.Mix))
	for i, v := range pop.Mix {
		if bodies[i], err = json.Marshal(schemas.ValidateRequest{Value: v}); err != nil {
			return nil, err
		}
	}
	if p != nil {
		p("checking both answer alike", 0, 1)
	}
	if err := pgCheckAlike(ctx, klURL, pgURL, header, bodies[:min(len(bodies), pgCheckBodies)]); err != nil {
		return nil, err
	}

	o.HTTPConns = conns
	ref, subj, err := compareHTTP(ctx, o, p, pgScenario, "postgres service", pgURL, "keyledger", klURL, bodies, header)
	if err != nil {
		return nil, err
	}
	ratio := 0.0
	if ref.OpsPerSec > 0 {
		ratio = subj.OpsPerSec / ref.OpsPerSec
	}
	return []Result{{
		Scenario: pgScenario, Subject: subj, Reference: ref, Ratio: ratio,
		RatioOf: "keyledger validations/s ÷ PostgreSQL-backed service",
		Target:  pgTarget,
		Met:     Met(ratio >= 3 && subj.P99Ms < ref.P99Ms),
		Notes: []string{
			fmt.Sprintf("PostgreSQL %s: table api_keys of %d rows (%d revoked), %s with its primary-key index on hash; loaded in %s (COPY %s, index and VACUUM ANALYZE %s)",
				version, load.rows, load.revoked, pgMB(load.bytes), load.total().Round(time.Millisecond), load.copy.Round(time.Millisecond), load.index.Round(time.Millisecond)),
			fmt.Sprintf("the PostgreSQL service: pgxpool of %d connections with a prepared statement, the same admin-key check, strict JSON decoding, key format check and answer as keyledger; it does not record last use (keyledger does, in memory)", conns),
			fmt.Sprintf("%d keep-alive connections, closed loop, realistic mix over %d keys; PostgreSQL, both services and the load generator share the same %d CPUs", conns, len(pop.Values), runtime.NumCPU()),
		},
	}}, nil
}

// pgLoadStats is what loading the table took.
type pgLoadStats struct {
	rows, revoked int
	bytes         int64
	copy, index   time.Duration
}

func (s pgLoadStats) total() time.Duration { return s.copy + s.index }

// pgLoad (re)creates the table api_keys and copies the population's keys
// into it: the projection's own records (same ids, hashes, owners, times and
// statuses), in chunks, then builds the primary key and analyses the table,
// as one would after a bulk load.
func pgLoad(ctx context.Context, conn *pgx.Conn, pop *Population, p Progress) (pgLoadStats, error) {
	var st pgLoadStats
	for _, q := range []string{
		`DROP TABLE IF EXISTS api_keys`,
		`CREATE TABLE api_keys (
			hash bytea NOT NULL,
			id text NOT NULL,
			organization_id text NOT NULL,
			owner_type text NOT NULL,
			owner_id text NOT NULL,
			name text NOT NULL,
			obfuscated_value text NOT NULL,
			permissions text[] NOT NULL,
			status text NOT NULL,
			expires_at timestamptz,
			created_at timestamptz NOT NULL,
			updated_at timestamptz NOT NULL,
			last_used_at timestamptz
		)`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return st, err
		}
	}
	cols := []string{"hash", "id", "organization_id", "owner_type", "owner_id", "name", "obfuscated_value",
		"permissions", "status", "expires_at", "created_at", "updated_at", "last_used_at"}
	total := len(pop.Values)
	step := fmt.Sprintf("copying %d keys to PostgreSQL", total)
	start := time.Now()
	rows := make([][]any, 0, pgCopyChunk)
	flush := func() error {
		if len(rows) == 0 {
			return nil
		}
		n, err := conn.CopyFrom(ctx, pgx.Identifier{"api_keys"}, cols, pgx.CopyFromRows(rows))
		if err != nil {
			return err
		}
		if int(n) != len(rows) {
			return fmt.Errorf("COPY wrote %d rows of %d", n, len(rows))
		}
		st.rows += len(rows)
		rows = rows[:0]
		if p != nil {
			p(step, st.rows, total)
		}
		return ctx.Err()
	}
	// The projection is read page by page in its own goroutine, so that
	// reading it overlaps with PostgreSQL's side of the COPY.
	pages := make(chan []*domain.Key, 4)
	listErr := make(chan error, 1)
	lctx, cancel := context.WithCancel(ctx)
	var lister sync.WaitGroup
	defer func() {
		cancel()
		lister.Wait() // the population closes after this returns
	}()
	lister.Add(1)
	go func() {
		defer lister.Done()
		defer close(pages)
		listErr <- pgListKeys(lctx, pop, pages)
	}()
	for keys := range pages {
		for _, k := range keys {
			if k.Status == domain.StatusRevoked {
				st.revoked++
			}
			h := k.Hash
			rows = append(rows, []any{h[:], k.ID, k.OrganizationID, string(k.Owner.Type), k.Owner.ID, k.Name, k.Obfuscated,
				k.Permissions, string(k.Status), k.ExpiresAt, k.CreatedAt, k.UpdatedAt, nil})
			if len(rows) == pgCopyChunk {
				if err := flush(); err != nil {
					return st, err
				}
			}
		}
	}
	if err := <-listErr; err != nil {
		return st, err
	}
	if err := flush(); err != nil {
		return st, err
	}
	st.copy = time.Since(start)
	if st.rows != total || st.revoked != pop.Revoked {
		return st, fmt.Errorf("the projection listed %d keys (%d revoked), the population has %d (%d revoked)", st.rows, st.revoked, total, pop.Revoked)
	}
	if p != nil {
		p("indexing and analysing api_keys", 0, 1)
	}
	start = time.Now()
	for _, q := range []string{
		`ALTER TABLE api_keys ADD PRIMARY KEY (hash)`,
		`VACUUM (ANALYZE) api_keys`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return st, err
		}
	}
	st.index = time.Since(start)
	if err := conn.QueryRow(ctx, `SELECT pg_total_relation_size('api_keys')`).Scan(&st.bytes); err != nil {
		return st, err
	}
	return st, nil
}

// pgListKeys sends every key of the population's projection to pages, in
// creation order, as the projection records them.
func pgListKeys(ctx context.Context, pop *Population, pages chan<- []*domain.Key) error {
	after := ""
	for {
		page, err := pop.Proj.List(ctx, domain.KeyListQuery{OrganizationID: populationOrg, Ascending: true, Limit: 10_000, After: after})
		if err != nil {
			return err
		}
		select {
		case pages <- page.Keys:
		case <-ctx.Done():
			return ctx.Err()
		}
		if page.After == "" {
			return nil
		}
		after = page.After
	}
}

// pgOpenPool opens a pool of exactly size connections, each with the lookup
// prepared, and opens them all now rather than during the first round.
func pgOpenPool(ctx context.Context, dsn string, size int) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL DSN: %w", err)
	}
	cfg.MaxConns = int32(size)
	cfg.MinConns = int32(size)
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Prepare(ctx, pgStmt, pgLookupSQL)
		return err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL pool: %w", err)
	}
	held := make([]*pgxpool.Conn, 0, size)
	defer func() {
		for _, c := range held {
			c.Release()
		}
	}()
	for i := 0; i < size; i++ {
		c, err := pool.Acquire(ctx)
		if err != nil {
			pool.Close()
			return nil, fmt.Errorf("PostgreSQL pool: %w", err)
		}
		held = append(held, c)
	}
	return pool, nil
}

// pgService is the service a careful user would write around PostgreSQL:
// the same endpoint, admin-key check, strict decoding, format check and
// answer as keyledger, with the lookup in PostgreSQL.
type pgService struct {
	pool      *pgxpool.Pool
	adminHash [sha256.Size]byte
	log       *slog.Logger
	mux       *http.ServeMux
}

func newPGService(pool *pgxpool.Pool, adminHash [sha256.Size]byte, log *slog.Logger) *pgService {
	s := &pgService{pool: pool, adminHash: adminHash, log: log, mux: http.NewServeMux()}
	s.mux.HandleFunc("POST /api_keys/validations", s.validate)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		pgWriteJSON(w, http.StatusNotFound, schemas.Error{Code: "route_not_found", Message: "no such route: " + r.Method + " " + r.URL.Path})
	})
	return s
}

func (s *pgService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	s.mux.ServeHTTP(w, r)
}

func (s *pgService) validate(w http.ResponseWriter, r *http.Request) {
	// The admin key: a bearer token whose SHA-256 equals the configured
	// hash, compared in constant time.
	h := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="keyledger"`)
		pgWriteJSON(w, http.StatusUnauthorized, schemas.Error{Code: "unauthorized", Message: "an admin API key is required (Authorization: Bearer ...)"})
		return
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(h[len(prefix):])))
	if subtle.ConstantTimeCompare(sum[:], s.adminHash[:]) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="keyledger", error="invalid_token"`)
		pgWriteJSON(w, http.StatusUnauthorized, schemas.Error{Code: "unauthorized", Message: "the API key is not valid"})
		return
	}

	var req schemas.ValidateRequest
	if msg := pgDecode(w, r, &req); msg != "" {
		pgWriteJSON(w, http.StatusBadRequest, schemas.Error{Code: "invalid_json", Message: msg})
		return
	}
	// No round trip for garbage: the format and checksum first.
	if domain.CheckKeyFormat(req.Value) != nil {
		pgWriteJSON(w, http.StatusOK, schemas.ValidateResponse{Reason: string(domain.InvalidMalformed)})
		return
	}
	hash := domain.HashKey(req.Value)
	var (
		k                  schemas.APIKey
		ownerType, ownerID string
		status             string
		expires, lastUsed  *time.Time
	)
	err := s.pool.QueryRow(r.Context(), pgStmt, hash[:]).Scan(&k.ID, &k.OrganizationID, &ownerType, &ownerID, &k.Name,
		&k.ObfuscatedValue, &k.Permissions, &status, &expires, &k.CreatedAt, &k.UpdatedAt, &lastUsed)
	if errors.Is(err, pgx.ErrNoRows) {
		pgWriteJSON(w, http.StatusOK, schemas.ValidateResponse{Reason: string(domain.InvalidNotFound)})
		return
	}
	if err != nil {
		s.log.Error("postgres service: lookup", "err", err)
		pgWriteJSON(w, http.StatusInternalServerError, schemas.Error{Code: "internal", Message: "internal error"})
		return
	}
	switch {
	case status == string(domain.StatusRevoked):
		pgWriteJSON(w, http.StatusOK, schemas.ValidateResponse{Reason: string(domain.InvalidRevoked)})
		return
	case expires != nil && !time.Now().Before(*expires):
		pgWriteJSON(w, http.StatusOK, schemas.ValidateResponse{Reason: string(domain.InvalidExpired)})
		return
	}
	k.Object = schemas.ObjectAPIKey
	k.Owner = schemas.Owner{Type: ownerType, ID: ownerID}
	if ownerType == string(domain.OwnerUser) {
		k.UserID = &ownerID
	}
	if k.Permissions == nil {
		k.Permissions = []string{}
	}
	k.Status = status
	k.ExpiresAt = pgUTC(expires)
	k.LastUsedAt = pgUTC(lastUsed)
	k.CreatedAt, k.UpdatedAt = k.CreatedAt.UTC(), k.UpdatedAt.UTC()
	pgWriteJSON(w, http.StatusOK, schemas.ValidateResponse{APIKey: &k})
}

func pgUTC(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// pgDecode reads exactly one JSON object into v, as strictly as keyledger:
// bounded size, valid UTF-8, no unknown fields, no trailing data. It returns
// what is wrong, or "".
func pgDecode(w http.ResponseWriter, r *http.Request, v any) string {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, api.MaxBodyBytes))
	if err != nil {
		return "the request body could not be read or is too large"
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return "a JSON body is required"
	}
	if !utf8.Valid(body) {
		return "the request body is not valid UTF-8"
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return "malformed JSON: " + err.Error()
	}
	if dec.More() {
		return "the body must hold exactly one JSON object"
	}
	if _, err := dec.Token(); err != io.EOF {
		return "the body must hold exactly one JSON object"
	}
	return ""
}

func pgWriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// pgCheckAlike sends the same bodies to both services and fails unless they
// give the same answers (the same key, or the same reason), so that the
// comparison is between two services doing the same work. Times are compared
// to the microsecond, PostgreSQL's precision; last_used_at is not compared
// (keyledger records use, the PostgreSQL service does not).
func pgCheckAlike(ctx context.Context, klURL, pgURL string, header http.Header, bodies [][]byte) error {
	seen := map[string]int{}
	for i, b := range bodies {
		var ans [2]schemas.ValidateResponse
		for j, url := range []string{klURL, pgURL} {
			raw, _, err := httpPostOnce(ctx, url, header, b)
			if err != nil {
				return fmt.Errorf("check: body %d: %w", i, err)
			}
			if err := json.Unmarshal(raw, &ans[j]); err != nil {
				return fmt.Errorf("check: body %d: %w", i, err)
			}
			if k := ans[j].APIKey; k != nil {
				k.LastUsedAt = nil
				k.CreatedAt = k.CreatedAt.Truncate(time.Microsecond)
				k.UpdatedAt = k.UpdatedAt.Truncate(time.Microsecond)
				if k.ExpiresAt != nil {
					t := k.ExpiresAt.Truncate(time.Microsecond)
					k.ExpiresAt = &t
				}
			}
		}
		if !reflect.DeepEqual(ans[0], ans[1]) {
			return fmt.Errorf("check: body %d: keyledger answered %+v, the PostgreSQL service %+v", i, ans[0], ans[1])
		}
		seen[ans[0].Reason]++
	}
	if len(bodies) >= pgCheckBodies && (seen[""] == 0 || seen[string(domain.InvalidNotFound)] == 0 || seen[string(domain.InvalidMalformed)] == 0) {
		return fmt.Errorf("check: the mix's first %d bodies gave %v: hits, misses and malformed values expected", len(bodies), seen)
	}
	return nil
}

func pgMB(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/(1<<20)) }
