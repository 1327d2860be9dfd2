// Command keyledger runs the API key ledger (`keyledger serve`) and talks to
// a running one (`keyledger keys ...`, `keyledger validate`). It is the one
// place that reads configuration, assembles the parts, runs them, and shuts
// them down in order.
package main
