package client

import (
	"errors"
	"fmt"
)

// Error is an error answer of the API: the HTTP status and the API's
// stable, machine-readable code.
type Error struct {
	Status  int
	Code    string
	Message string
	// RetryAfter is the server's Retry-After hint, if it gave one.
	RetryAfter string
}

func (e *Error) Error() string {
	return fmt.Sprintf("keyledger: %d %s: %s", e.Status, e.Code, e.Message)
}

// Codes the API answers with that callers commonly branch on. The full list
// is in schemas/openapi.json.
const (
	CodeNotFound          = "not_found"
	CodeUnauthorized      = "unauthorized"
	CodeConflict          = "conflict"
	CodeLedgerUnavailable = "ledger_unavailable"
	CodeStorageFull       = "storage_full" // 507: nothing was written; retry once the operator frees space
)

// ErrorCode returns the API code of err, or "" when err is not an API
// error (a network failure, a cancelled context).
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// IsNotFound reports whether err is the API's 404: the key does not exist,
// or not for this caller.
func IsNotFound(err error) bool { return ErrorCode(err) == CodeNotFound }
