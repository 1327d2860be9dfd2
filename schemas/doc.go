// Package schemas holds every name keyledger puts on the wire, defined once:
// event types and their JSON Schemas (events/*.json), the ledger's stream,
// subjects and headers, and the JSON shapes of the HTTP API shared by the
// server and the Go client. It imports only the standard library.
package schemas
