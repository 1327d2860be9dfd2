package bench

import (
	"context"
	"errors"
)

// commands and rebuild are written in commands.go.
func commands(ctx context.Context, o Options, p Progress) ([]Result, error) {
	return nil, errors.New("commands is not written yet")
}

func rebuild(ctx context.Context, o Options, p Progress) ([]Result, error) {
	return nil, errors.New("rebuild is not written yet")
}
