// Package fleet makes a command's answer hold on every node: each node
// that validates (a keyledger server, an embedded validator) reports the
// ledger sequence its projection has applied, and a command is answered
// only once every node heard from recently has applied it, or once the
// staleness bound has passed, after which a node that has not applied it
// can no longer prove itself current and has stopped validating (fails
// closed). So a revoke answered on node A is refused by node B at once.
package fleet
