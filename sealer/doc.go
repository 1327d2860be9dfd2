// Package sealer makes the ledger tamper-evident. It folds the ledger, in
// sequence order, into a Merkle tree (RFC 6962 hashing) and periodically
// signs a checkpoint with Ed25519: the tree's size and root, the previous
// checkpoint's hash, and the id and leaf hash of every event it adds. A
// verifier holding only the public key recomputes everything and reports,
// by sequence and event id, any event changed, removed, inserted or
// reordered, and any checkpoint whose signature or chain fails.
package sealer
