// Package projections folds the ledger into Pebble, exactly once: each run of
// events and the ledger sequence it reaches commit in one batch, so a restart
// resumes from the checkpoint and a rebuild from sequence 1 gives the same
// state. It serves validation (from an in-memory index that only the projector
// writes, in ledger order), the admin views by organization and by user, and
// last-used telemetry.
package projections
