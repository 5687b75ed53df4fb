package par_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/fhlab/provision/internal/par"
)

func TestEachBoundsAndCollects(t *testing.T) {
	var running, peak atomic.Int32
	err := par.Each(context.Background(), 3, 20, func(_ context.Context, i int) error {
		now := running.Add(1)
		defer running.Add(-1)
		for {
			p := peak.Load()
			if now <= p || peak.CompareAndSwap(p, now) {
				break
			}
		}
		if i%7 == 0 {
			return fmt.Errorf("node-%d: failed", i)
		}
		return nil
	})
	if peak.Load() > 3 {
		t.Errorf("%d calls ran at once, limit 3", peak.Load())
	}
	for _, want := range []string{"node-0: failed", "node-7: failed", "node-14: failed"} {
		if err == nil || !contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}

func TestEachStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int32
	err := par.Each(ctx, 1, 10, func(context.Context, int) error {
		if calls.Add(1) == 2 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || calls.Load() > 3 {
		t.Fatalf("Each after cancel: err %v, %d calls", err, calls.Load())
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
