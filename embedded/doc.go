// Package embedded is the in-process validator an application service
// embeds: it follows the ledger stream over NATS into its own projection (a
// local folder, or memory) and validates keys with no network hop.
//
// It answers only from state it can prove current: it checks the ledger's
// last sequence at a fixed pace and records when its projection had reached
// it. Once that proof is older than Config.StaleAfter (the NATS connection
// is lost, the projector stopped), Validate fails closed with ErrStale until
// a new proof is made. Validations are reported to keyledger servers as
// last-used telemetry.
package embedded
