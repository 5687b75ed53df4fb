package flash

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"path/filepath"
	"sync"
	"time"
)

// Card is one card (or image file) to write, and the node it is for.
type Card struct {
	Name    string   // the node's name, or the device's when there is no node
	Target  string   // device path, or the image file to create with ToFile
	ToFile  bool     // Target is a regular file to create (sparse)
	Overlay *Overlay // the node's seed overlay; nil writes the image only
}

// Phase is where a card is.
type Phase string

const (
	PhaseWrite   Phase = "write"
	PhaseVerify  Phase = "verify"
	PhaseOverlay Phase = "overlay"
	PhaseDone    Phase = "done"
	PhaseFailed  Phase = "failed"
)

// Event reports a card's progress: Done of Total bytes in Phase.
type Event struct {
	Card        string
	Target      string
	Phase       Phase
	Done, Total int64
}

// Result is what happened to one card.
type Result struct {
	Card     string        `json:"card"`
	Target   string        `json:"target"`
	OK       bool          `json:"ok"`
	Written  int64         `json:"written"`  // image bytes written
	Verified int64         `json:"verified"` // bytes read back and matched
	Overlay  []string      `json:"overlay,omitempty"`
	Duration time.Duration `json:"-"`
	Seconds  float64       `json:"seconds"`
	Err      error         `json:"-"`
	Error    string        `json:"error,omitempty"`
	// Cleared is true when the card was left without a partition table
	// after a failure or an interrupt (it will not boot half written).
	Cleared bool   `json:"cleared,omitempty"`
	Note    string `json:"note,omitempty"`
}

// Flasher writes one image to cards.
type Flasher struct {
	Image *Image
	// Progress, when set, is called from each card's goroutine as it goes.
	Progress func(Event)

	// beforeReadBack, for tests, runs once all of range r is on the card,
	// before it is read back: a place to damage the card.
	beforeReadBack func(Card, Range) error
}

func (fl *Flasher) hook(c Card, r Range) error {
	if fl.beforeReadBack == nil {
		return nil
	}
	return fl.beforeReadBack(c, r)
}

// FlashAll writes every card at once, each at its own speed; one card's
// failure does not stop the others. Results are in the order of cards.
func (fl *Flasher) FlashAll(ctx context.Context, cards []Card) []Result {
	res := make([]Result, len(cards))
	var wg sync.WaitGroup
	for i, c := range cards {
		wg.Go(func() { res[i] = fl.Flash(ctx, c) })
	}
	wg.Wait()
	return res
}

func (fl *Flasher) report(c Card, p Phase, done, total int64) {
	if fl.Progress != nil {
		fl.Progress(Event{Card: c.Name, Target: c.Target, Phase: p, Done: done, Total: total})
	}
}

// Flash writes the image to one card, verifies it from the card, applies
// and verifies the overlay. The card is done only when Result.OK.
func (fl *Flasher) Flash(ctx context.Context, c Card) (res Result) {
	start := time.Now()
	res = Result{Card: c.Name, Target: c.Target}
	st := &cardState{}
	defer func() {
		res.Duration = time.Since(start).Round(time.Millisecond)
		res.Seconds = res.Duration.Seconds()
		if res.Err == nil {
			res.OK = true
			fl.report(c, PhaseDone, res.Verified, res.Verified)
			return
		}
		res.Error = res.Err.Error()
		fl.report(c, PhaseFailed, 0, 0)
	}()
	im := fl.Image
	t, err := openTarget(c.Target, c.ToFile, im.Size)
	if err != nil {
		res.Err = fmt.Errorf("%s: %w", c.Name, err)
		return res
	}
	defer t.f.Close()
	if n, err := t.size(); err != nil || n < im.Size {
		res.Err = fmt.Errorf("%s: %s holds %d bytes, the image %d (err %v): refused", c.Name, c.Target, n, im.Size, err)
		return res
	}
	err = fl.flash(ctx, c, t, st, &res)
	if err == nil {
		return res
	}
	res.Err = fmt.Errorf("%s (%s): %w", c.Name, c.Target, err)
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		res.Err = fmt.Errorf("%s (%s): stopped during %s: %w", c.Name, c.Target, st.phase, err)
	}
	if n, serr := t.size(); serr == nil && n < im.Size && st.phase != "" {
		res.Err = fmt.Errorf("%s (%s): the card was removed during %s (the device now holds %d bytes): %w", c.Name, c.Target, st.phase, n, err)
		res.Note = "card removed: it has no complete image; flash it again"
		return res
	}
	fl.leaveUnusable(t, st, &res)
	return res
}

type cardState struct {
	phase      Phase
	zeroed     bool // the first MiB was zeroed and synced
	mbrWritten bool // the image's first MiB is on the card
}

// leaveUnusable makes sure a card that did not verify has no partition
// table, and says so in the result.
func (fl *Flasher) leaveUnusable(t *target, st *cardState, res *Result) {
	if !st.zeroed && !st.mbrWritten {
		res.Note = "nothing was written to it"
		return
	}
	hb := min(int64(holdback), fl.Image.Size)
	if st.mbrWritten {
		if err := t.clearTable(hb); err != nil {
			res.Note = fmt.Sprintf("DO NOT BOOT IT: %v", err)
			return
		}
	} else if has, err := t.hasTable(); err != nil || has {
		if err := t.clearTable(hb); err != nil {
			res.Note = fmt.Sprintf("DO NOT BOOT IT: %v", err)
			return
		}
	}
	res.Cleared = true
	res.Note = "left without a partition table (unusable until flashed again)"
}

func (fl *Flasher) flash(ctx context.Context, c Card, t *target, st *cardState, res *Result) error {
	im := fl.Image
	m := im.Map
	hb := min(int64(holdback), im.Size)
	total := m.MappedBytes()

	// 1. No partition table while the card is half written.
	st.phase = PhaseWrite
	fl.report(c, PhaseWrite, 0, total)
	if err := t.clearTable(hb); err != nil {
		return err
	}
	st.zeroed = true

	src, err := openImageFile(im.Path)
	if err != nil {
		return err
	}
	defer src.Close()

	// The read-back runs beside the writes: a range is read from the card
	// as soon as all of it is there. Both sides use O_DIRECT, so the bytes
	// read come from the card, not from the page cache. Where the target
	// has no O_DIRECT (tmpfs) it waits for the whole write and a dropped
	// cache instead.
	rb := newReadBack(m)
	if t.direct {
		if err := rb.start(ctx, t.path, func(r Range) error { return fl.hook(c, r) }); err != nil {
			return err
		}
	}
	defer rb.stop()

	// 2. Every mapped byte after the first MiB, several chunks in flight;
	// the image's last bytes, when not a whole sector, are written after
	// the others with O_DIRECT off.
	var (
		done    int64
		tailMu  sync.Mutex
		tail    []byte
		tailOff int64
		tailRng = -1
	)
	err = pipe(ctx, writeChunks(m, hb), func(ch chunk, b []byte) error {
		if _, err := src.ReadAt(b[:ch.n], ch.off); err != nil {
			return fmt.Errorf("read image %s at %d: %w", im.Path, ch.off, err)
		}
		n := ch.n &^ 511
		if n < ch.n {
			tailMu.Lock()
			tail, tailOff = bytes.Clone(b[n:ch.n]), ch.off+n
			tailMu.Unlock()
		}
		if n == 0 {
			return nil
		}
		if _, err := t.f.WriteAt(b[:n], ch.off); err != nil {
			return fmt.Errorf("write %s at byte %d: %w", t.path, ch.off, err)
		}
		return nil
	}, func(ch chunk, b []byte) error {
		done += ch.n
		res.Written = done
		fl.report(c, PhaseWrite, done, total)
		switch {
		case ch.n&511 != 0:
			tailRng = ch.rng // whole once the tail is written
		case ch.last && m.Ranges[ch.rng].Offset(m.BlockSize) >= hb:
			rb.written(ch.rng)
		}
		return nil
	})
	if err == nil && tail != nil {
		if err = t.writeAt(tail, tailOff); err != nil {
			err = fmt.Errorf("write %s at byte %d: %w", t.path, tailOff, err)
		}
	}
	if err != nil {
		return err
	}
	if err := t.sync(); err != nil {
		return fmt.Errorf("sync %s: %w", t.path, err)
	}
	if tailRng >= 0 && m.Ranges[tailRng].Offset(m.BlockSize) >= hb {
		rb.written(tailRng)
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	// 3. The first MiB last.
	head := alignedBuf(int(holdback))
	if _, err := src.ReadAt(head[:hb], 0); err != nil {
		return fmt.Errorf("read image %s: %w", im.Path, err)
	}
	st.mbrWritten = true
	if err := t.writeAt(head[:hb], 0); err != nil {
		return fmt.Errorf("write %s first MiB: %w", t.path, err)
	}
	if err := t.sync(); err != nil {
		return fmt.Errorf("sync %s: %w", t.path, err)
	}
	res.Written += mappedIn(m, 0, hb)
	fl.report(c, PhaseWrite, total, total)

	// 4. Everything read back from the card.
	st.phase = PhaseVerify
	if !t.direct {
		if err := verifyPrep(t); err != nil {
			return err
		}
		if err := rb.start(ctx, t.path, func(r Range) error { return fl.hook(c, r) }); err != nil {
			return err
		}
	}
	rb.allWritten()
	n, err := rb.wait(func(done int64) { fl.report(c, PhaseVerify, done, total) })
	res.Verified = n
	if err != nil {
		return err
	}

	// 5. The node's seed.
	if c.Overlay != nil {
		st.phase = PhaseOverlay
		fl.report(c, PhaseOverlay, 0, int64(len(c.Overlay.Files)))
		if err := t.setDirect(false); err != nil {
			return err
		}
		if err := applyOverlay(t, c.Overlay); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := verifyOverlay(t, c.Overlay); err != nil {
			return err
		}
		for _, f := range c.Overlay.Files {
			res.Overlay = append(res.Overlay, f.Path)
		}
		fl.report(c, PhaseOverlay, int64(len(c.Overlay.Files)), int64(len(c.Overlay.Files)))
	}
	t.rereadPartitions()
	return nil
}

type chunk struct {
	off, n int64
	rng    int // index of the range in the map, for verify
	last   bool
}

// writeChunks splits the mapped ranges past skip bytes into chunks.
func writeChunks(m *Bmap, skip int64) []chunk {
	var out []chunk
	for i, r := range m.Ranges {
		off := max(r.Offset(m.BlockSize), skip)
		end := r.Offset(m.BlockSize) + r.Length(m.BlockSize, m.ImageSize)
		for off < end {
			n := min(int64(chunkSize), end-off)
			out = append(out, chunk{off: off, n: n, rng: i, last: off+n == end})
			off += n
		}
	}
	return out
}

// mappedIn is the number of mapped bytes in [from, to).
func mappedIn(m *Bmap, from, to int64) int64 {
	var n int64
	for _, r := range m.Ranges {
		a := max(r.Offset(m.BlockSize), from)
		z := min(r.Offset(m.BlockSize)+r.Length(m.BlockSize, m.ImageSize), to)
		if z > a {
			n += z - a
		}
	}
	return n
}

// VerifyError names a range that read back wrong.
type VerifyError struct {
	Target         string
	Range          Range
	Offset, Length int64
	Want, Got      string
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("verify %s: %s (bytes %d-%d) read back with sha256 %s, the image has %s", e.Target, e.Range, e.Offset, e.Offset+e.Length-1, e.Got, e.Want)
}

// verifyPrep makes the following reads of t come from the device:
// O_DIRECT where it can be set, and the cached pages dropped.
func verifyPrep(t *target) error {
	if err := t.setDirect(true); err != nil && t.block {
		return fmt.Errorf("O_DIRECT on %s: %w", t.path, err)
	}
	return t.dropCache()
}

// verify reads every mapped range back with O_DIRECT (after dropping the
// device's buffers) and compares its sha256 with the map.
func verify(ctx context.Context, t *target, m *Bmap, progress func(int64)) (int64, error) {
	if err := verifyPrep(t); err != nil {
		return 0, err
	}
	return hashRanges(ctx, m, t.path, func(ch chunk, b []byte) error {
		if err := t.readAt(b, ch.off); err != nil {
			return fmt.Errorf("read back %s at byte %d: %w", t.path, ch.off, err)
		}
		return nil
	}, progress)
}

// hashRanges reads every mapped range with read (several chunks in
// flight), hashes each range in order and returns a *VerifyError naming
// the first range whose sha256 is not the map's.
func hashRanges(ctx context.Context, m *Bmap, what string, read func(chunk, []byte) error, progress func(int64)) (int64, error) {
	return hashChunks(ctx, m, what, writeChunks(m, 0), read, progress)
}

// hashChunks is hashRanges over chunks, which hold each range's chunks
// one after the other, the ranges in any order.
func hashChunks(ctx context.Context, m *Bmap, what string, chunks []chunk, read func(chunk, []byte) error, progress func(int64)) (int64, error) {
	var (
		done int64
		h    hash.Hash
	)
	err := pipe(ctx, chunks, func(ch chunk, b []byte) error {
		return read(ch, b[:ch.n])
	}, func(ch chunk, b []byte) error {
		if h == nil {
			h = sha256.New()
		}
		h.Write(b[:ch.n])
		done += ch.n
		if ch.last {
			r := m.Ranges[ch.rng]
			if got := hex.EncodeToString(h.Sum(nil)); got != r.SHA256 {
				return &VerifyError{Target: what, Range: r, Offset: r.Offset(m.BlockSize), Length: r.Length(m.BlockSize, m.ImageSize), Want: r.SHA256, Got: got}
			}
			h = nil
			if progress != nil {
				progress(done)
			}
		}
		return nil
	})
	return done, err
}

// Verify reads the image's mapped ranges back from a device or image file,
// bypassing the page cache, and compares them with the image's map.
func Verify(ctx context.Context, path string, im *Image) (int64, error) {
	t, err := openRead(path)
	if err != nil {
		return 0, err
	}
	defer t.f.Close()
	return verify(ctx, t, im.Map, nil)
}

// ImageFileName is the file --to-file writes for a card.
func ImageFileName(dir, name string) string { return filepath.Join(dir, name+".img") }
