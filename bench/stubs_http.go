package bench

import (
	"context"
	"errors"
)

// validateHTTP and memory are written in http.go and memory.go.
func validateHTTP(ctx context.Context, o Options, p Progress) ([]Result, error) {
	return nil, errors.New("validate-http is not written yet")
}

func memory(ctx context.Context, o Options, p Progress) ([]Result, error) {
	return nil, errors.New("memory is not written yet")
}
