// Package eventstore is the ledger: a NATS JetStream stream (embedded or on an
// existing server) that holds every event, appended with per-aggregate
// optimistic concurrency, idempotent message ids and atomic batches, and read
// back by aggregate or in sequence order. It implements domain.Ledger.
package eventstore
