// Package client is the Go client of keyledger's HTTP API and the net/http
// middleware that protects an application's routes with keyledger keys.
//
// The middleware validates through a Validator: the HTTP Client here, or an
// embedded validator (package embedded) that follows the ledger in-process.
// It imports only the wire shapes of package schemas, so an application
// that validates over HTTP pulls in nothing else of keyledger.
package client
