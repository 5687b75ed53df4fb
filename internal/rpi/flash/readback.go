package flash

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// readBack reads a card's mapped ranges back and checks each against the
// map's sha256, a range as soon as all of it is on the card, so that the
// verification runs beside the writing instead of after it.
type readBack struct {
	m      *Bmap
	ready  []chan struct{} // closed when the range is whole on the card
	closed []bool          // touched only by the flashing goroutine
	done   atomic.Int64    // bytes read back and matched so far
	result chan readBackResult
	cancel context.CancelFunc
	ended  bool
}

type readBackResult struct {
	n   int64
	err error
}

func newReadBack(m *Bmap) *readBack {
	rb := &readBack{m: m, ready: make([]chan struct{}, len(m.Ranges)), closed: make([]bool, len(m.Ranges)), result: make(chan readBackResult, 1)}
	for i := range rb.ready {
		rb.ready[i] = make(chan struct{})
	}
	return rb
}

// start opens path a second time for reading (O_DIRECT where it can) and
// reads each range back once written says it is whole. hook runs before a
// range is read.
func (rb *readBack) start(ctx context.Context, path string, hook func(Range) error) error {
	rt, err := openRead(path)
	if err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	ctx, rb.cancel = context.WithCancel(ctx)
	go func() {
		defer rt.f.Close()
		n, err := hashChunks(ctx, rb.m, path, rb.order(), func(ch chunk, b []byte) error {
			select {
			case <-rb.ready[ch.rng]:
			case <-ctx.Done():
				return ctx.Err()
			}
			if r := rb.m.Ranges[ch.rng]; ch.off == r.Offset(rb.m.BlockSize) {
				if err := hook(r); err != nil {
					return err
				}
			}
			if err := rt.readAt(b, ch.off); err != nil {
				return fmt.Errorf("read back %s at byte %d: %w", path, ch.off, err)
			}
			return nil
		}, func(n int64) { rb.done.Store(n) })
		rb.result <- readBackResult{n, err}
	}()
	return nil
}

// order is the read-back's chunks: the ranges wholly past the first MiB
// first, as they are written, then those reaching into it, which are
// whole only once the first MiB is written last.
func (rb *readBack) order() []chunk {
	all := writeChunks(rb.m, 0)
	hb := min(int64(holdback), rb.m.ImageSize)
	head := func(ch chunk) bool { return rb.m.Ranges[ch.rng].Offset(rb.m.BlockSize) < hb }
	out := make([]chunk, 0, len(all))
	for _, ch := range all {
		if !head(ch) {
			out = append(out, ch)
		}
	}
	for _, ch := range all {
		if head(ch) {
			out = append(out, ch)
		}
	}
	return out
}

// written says range i is whole on the card.
func (rb *readBack) written(i int) {
	if !rb.closed[i] {
		rb.closed[i] = true
		close(rb.ready[i])
	}
}

// allWritten says every range is on the card (the first MiB included).
func (rb *readBack) allWritten() {
	for i := range rb.ready {
		rb.written(i)
	}
}

// wait returns what the read-back found, calling progress now and then
// with the bytes verified so far.
func (rb *readBack) wait(progress func(int64)) (int64, error) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case r := <-rb.result:
			rb.ended = true
			progress(r.n)
			return r.n, r.err
		case <-tick.C:
			progress(rb.done.Load())
		}
	}
}

// stop ends a read-back that is still running (the write failed).
func (rb *readBack) stop() {
	if rb.cancel == nil || rb.ended {
		return
	}
	rb.cancel()
	<-rb.result
	rb.ended = true
}
