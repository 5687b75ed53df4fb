//go:build !linux

package discover

import (
	"context"
	"errors"
)

// sweep needs Linux: the loop uses epoll and connect's Linux semantics.
func sweep(context.Context, Options, *prober) (Stats, error) {
	return Stats{}, errors.New("sweeping needs Linux")
}
