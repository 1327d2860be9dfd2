// Package api is keyledger's HTTP API: WorkOS-compatible API key endpoints,
// authentication, strict request decoding, and the one place where domain
// errors become HTTP statuses and error codes.
package api
