package eventstore

import "github.com/oklog/ulid/v2"

// NewID returns prefix followed by a new ULID: unique, and sortable by time
// of creation, which the admin views page by.
func NewID(prefix string) string { return prefix + ulid.Make().String() }
