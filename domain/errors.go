package domain

import (
	"errors"
	"fmt"
)

// Kind classifies an error for the edges: each edge maps a Kind to its own
// status (HTTP status, CLI exit code) in one place.
type Kind int

const (
	KindInternal      Kind = iota
	KindInvalid            // the request is malformed
	KindUnprocessable      // well-formed, but breaks a rule (permission outside the catalogue)
	KindUnauthorized       // no valid credential
	KindForbidden          // the caller may not do this
	KindNotFound           // does not exist, or not for this caller
	KindConflict           // the state changed under the command, or a duplicate
	KindUnavailable        // a dependency (the ledger) is not reachable; try again
	KindStorageFull        // the disk is full: nothing was written; try again once space is freed
)

// Error is the domain's error: a Kind for the edge, a stable machine-readable
// Code, and a message safe to show a caller.
type Error struct {
	Kind    Kind
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf builds a domain error.
func Errorf(kind Kind, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Sentinels for the conditions callers branch on.
var (
	ErrNotFound    = &Error{Kind: KindNotFound, Code: "not_found", Message: "not found"}
	ErrConflict    = &Error{Kind: KindConflict, Code: "conflict", Message: "the resource changed; retry"}
	ErrUnavailable = &Error{Kind: KindUnavailable, Code: "ledger_unavailable", Message: "the ledger is not reachable"}
	ErrStorageFull = &Error{Kind: KindStorageFull, Code: "storage_full", Message: "the disk is full: no change was written; retry once space is freed"}
)

// Is lets errors.Is match domain errors by code.
func (e *Error) Is(target error) bool {
	var t *Error
	if errors.As(target, &t) {
		return t.Code == e.Code
	}
	return false
}

// ErrorKind returns the Kind of the first domain error in err's chain, or
// KindInternal.
func ErrorKind(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}
