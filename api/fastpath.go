package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/schemas"
)

// The validation endpoint is on the hot path of every request our users'
// APIs serve, so it reads and writes its JSON by hand. The hand-written
// forms are exact: a body the fast reader does not recognise goes to the
// general decoder (which gives the same answers and errors as every other
// endpoint), and the fast writer produces byte for byte what encoding/json
// would (tests compare the two).

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// Shared header values: net/http never modifies them, and setting a
// prebuilt slice saves an allocation per response.
var (
	hdrJSON    = []string{"application/json"}
	hdrNoStore = []string{"no-store"}
	hdrNoSniff = []string{"nosniff"}
)

// readBody reads a bounded body into a pooled buffer; put it back with
// bufPool.Put when done.
func readBody(w http.ResponseWriter, r *http.Request) (*[]byte, error) {
	bp := bufPool.Get().(*[]byte)
	buf := bytes.NewBuffer((*bp)[:0])
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	*bp = buf.Bytes()
	if err != nil {
		bufPool.Put(bp)
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errBodyTooLarge
		}
		return nil, domain.Errorf(domain.KindInvalid, "invalid_body", "the request body could not be read")
	}
	return bp, nil
}

// parseValue recognises exactly {"value":"<printable ASCII without \ or ">"}
// with optional whitespace, and returns the value. Anything else (escapes,
// other fields, other types) is left to the general decoder.
func parseValue(b []byte) (string, bool) {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return "", false
	}
	i = skipWS(b, i+1)
	const key = `"value"`
	if len(b)-i < len(key) || string(b[i:i+len(key)]) != key {
		return "", false
	}
	i = skipWS(b, i+len(key))
	if i >= len(b) || b[i] != ':' {
		return "", false
	}
	i = skipWS(b, i+1)
	if i >= len(b) || b[i] != '"' {
		return "", false
	}
	start := i + 1
	j := start
	for ; j < len(b) && b[j] != '"'; j++ {
		if c := b[j]; c < 0x20 || c >= 0x7f || c == '\\' {
			return "", false
		}
	}
	if j >= len(b) {
		return "", false
	}
	value := string(b[start:j])
	i = skipWS(b, j+1)
	if i >= len(b) || b[i] != '}' {
		return "", false
	}
	if skipWS(b, i+1) != len(b) {
		return "", false
	}
	return value, true
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// decodeBytes is decode for a body already read.
func decodeBytes(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return domain.Errorf(domain.KindInvalid, "invalid_json", "a JSON body is required")
	}
	if !utf8.Valid(body) {
		return domain.Errorf(domain.KindInvalid, "invalid_json", "the request body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return domain.Errorf(domain.KindInvalid, "invalid_json", "%s", describeJSONError(err))
	}
	if dec.More() {
		return domain.Errorf(domain.KindInvalid, "invalid_json", "the body must hold exactly one JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return domain.Errorf(domain.KindInvalid, "invalid_json", "the body must hold exactly one JSON object")
	}
	return nil
}

// writeRaw writes a prepared JSON body with the API's headers.
func writeRaw(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = hdrJSON
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// appendValidation appends what writeJSON(ValidateResponse) would write:
// the key of a successful validation, or null and the reason.
func appendValidation(b []byte, k *domain.ValidKey, obfuscated string, reason domain.ValidationReason) []byte {
	if reason != "" {
		b = append(b, `{"api_key":null,"reason":`...)
		b = appendString(b, string(reason))
		return append(b, "}\n"...)
	}
	b = append(b, `{"api_key":{"object":"api_key","id":`...)
	b = appendString(b, k.ID)
	b = append(b, `,"owner":{"type":`...)
	b = appendString(b, string(k.Owner.Type))
	b = append(b, `,"id":`...)
	b = appendString(b, k.Owner.ID)
	b = append(b, `},"organization_id":`...)
	b = appendString(b, k.OrganizationID)
	b = append(b, `,"user_id":`...)
	if k.Owner.Type == domain.OwnerUser {
		b = appendString(b, k.Owner.ID)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"name":`...)
	b = appendString(b, k.Name)
	b = append(b, `,"obfuscated_value":`...)
	b = appendString(b, obfuscated)
	b = append(b, `,"last_used_at":`...)
	b = appendTime(b, k.LastUsedAt)
	b = append(b, `,"permissions":[`...)
	for i, p := range k.Permissions {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, p)
	}
	b = append(b, `],"status":"active","expires_at":`...)
	b = appendTime(b, k.ExpiresAt)
	b = append(b, `,"created_at":`...)
	b = appendTime(b, k.CreatedAt)
	b = append(b, `,"updated_at":`...)
	b = appendTime(b, k.UpdatedAt)
	return append(b, "}}\n"...)
}

// appendTime appends a time as encoding/json does (RFC 3339 with
// nanoseconds), or null for the zero time.
func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendString appends s as a JSON string the way encoding/json does with
// HTML escaping off.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, `\u202`...)
			b = strconv.AppendInt(b, int64(r&0xF), 16)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// validateFast is the validation handler's body: read, recognise, validate,
// write, with pooled buffers and no reflection on the common path.
func (s *Server) validateFast(w http.ResponseWriter, r *http.Request) {
	bp, err := readBody(w, r)
	if err != nil {
		s.vm.inc(badRequest)
		s.fail(w, r, err)
		return
	}
	defer bufPool.Put(bp)
	value, ok := parseValue(*bp)
	if !ok {
		var req schemas.ValidateRequest
		if err := decodeBytes(*bp, &req); err != nil {
			s.vm.inc(badRequest)
			s.fail(w, r, err)
			return
		}
		value = req.Value
	}
	// Fail closed: no answer from a projection not proven current.
	if s.cfg.Fresh != nil && !s.cfg.Fresh() {
		s.vm.inc(stale)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "ledger_stale", "this node cannot prove it is current with the ledger; validations resume when it can")
		return
	}
	var k domain.ValidKey
	reason := s.cfg.Queries.ValidateInto(value, &k)
	if reason != "" && s.limitFailure(w, r) {
		s.vm.inc(rateLimited)
		return
	}
	s.vm.reason(reason)
	obfuscated := ""
	if reason == "" {
		obfuscated = domain.ObfuscateKey(value)
	}
	*bp = appendValidation((*bp)[:0], &k, obfuscated, reason)
	writeRaw(w, http.StatusOK, *bp)
}
