package api

import (
	"testing"

	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/schemas"
)

// The wire names of validation reasons are spelled in schemas for clients
// and in domain for the projection; they must not drift apart.
func TestValidationReasonsMatchTheWire(t *testing.T) {
	for d, w := range map[domain.ValidationReason]string{
		domain.InvalidNotFound:  schemas.ReasonNotFound,
		domain.InvalidRevoked:   schemas.ReasonRevoked,
		domain.InvalidExpired:   schemas.ReasonExpired,
		domain.InvalidMalformed: schemas.ReasonMalformed,
	} {
		if string(d) != w {
			t.Errorf("domain reason %q is %q on the wire", d, w)
		}
	}
}
