// Package consumers fans the ledger out to the world: a Watermill router
// over durable JetStream consumers that keyledger creates itself, with
// stable names, so that a restart resumes where it stopped and several
// nodes share each consumer. Each handler gets every event of its filter at
// least once (idempotent on the event id), in ledger order when it asks
// for order, together with the event's public form.
package consumers
