// Package diskguard keeps a full disk from breaking keyledger: it refuses
// commands (domain.ErrStorageFull, answered 507) while the data folder's
// filesystem has less free space than a reserve, keeps a ballast file that
// is given up when a store meets a full disk anyway (another program filled
// it), and, once space is back, has what a write error stopped restarted
// and lets commands through again, without an operator.
package diskguard
