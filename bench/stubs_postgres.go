package bench

import (
	"context"
	"errors"
)

// validatePostgres is written in postgres.go.
func validatePostgres(ctx context.Context, o Options, p Progress) ([]Result, error) {
	return nil, errors.New("validate-postgres is not written yet")
}
