// Package par runs work for many nodes at once, with a cap.
package par

import (
	"context"
	"errors"
	"sync"
)

// Each calls fn(ctx, i) for i in [0, n) with at most limit calls running at
// once, and returns every error joined (nil when all succeeded). Once ctx is
// done no new call starts; calls not started report ctx's error.
func Each(ctx context.Context, limit, n int, fn func(ctx context.Context, i int) error) error {
	if limit < 1 {
		limit = 1
	}
	errs := make([]error, n)
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			for j := i; j < n; j++ {
				errs[j] = ctx.Err()
			}
			wg.Wait()
			return errors.Join(errs...)
		}
		wg.Add(1)
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			errs[i] = fn(ctx, i)
		}(i)
	}
	wg.Wait()
	return errors.Join(errs...)
}
