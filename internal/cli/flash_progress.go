package cli

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/fhlab/provision/internal/rpi/flash"
	"github.com/fhlab/provision/internal/rpi/image"
)

// flashUI shows cards' progress: bars on a terminal, lines otherwise.
type flashUI interface {
	event(flash.Event)
	// say prints a line (above the bars on a terminal).
	say(format string, args ...any)
	wait()
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// barUI draws one bar per card (write then read-back, so each card's bar
// runs over twice its mapped bytes) and a total with speed and ETA.
type barUI struct {
	// mu guards last; pmu guards phase, which the decorators read while
	// drawing. Neither is held while calling into mpb: a bar's update
	// waits for its redraw, and the redraw waits for pmu.
	mu     sync.Mutex
	pmu    sync.Mutex
	p      *mpb.Progress
	total  *mpb.Bar
	bars   map[string]*mpb.Bar
	phase  map[string]string
	last   map[string]int64
	mapped int64
}

func newBarUI(w io.Writer, cards []string, mapped int64, autoRefresh bool) *barUI {
	u := &barUI{bars: map[string]*mpb.Bar{}, phase: map[string]string{}, last: map[string]int64{}, mapped: mapped}
	u.p = mpb.New(mpb.WithOutput(w), mpb.WithRefreshRate(200*time.Millisecond), mpb.ContainerOptional(mpb.WithAutoRefresh(), autoRefresh))
	for _, c := range cards {
		u.phase[c] = "waiting"
		u.bars[c] = u.p.AddBar(2*mapped, mpb.BarWidth(30),
			mpb.PrependDecorators(
				decor.Name(c, decor.WC{C: decor.DindentRight | decor.DextraSpace}),
				decor.Any(func(decor.Statistics) string { return u.phaseOf(c) }, decor.WC{W: 12, C: decor.DindentRight}),
			),
			mpb.AppendDecorators(decor.Percentage(decor.WC{W: 5})),
		)
	}
	u.total = u.p.AddBar(2*mapped*int64(len(cards)), mpb.BarWidth(30),
		mpb.PrependDecorators(
			decor.Name("total", decor.WC{C: decor.DindentRight | decor.DextraSpace}),
			decor.CountersKibiByte("% .1f / % .1f", decor.WC{W: 12, C: decor.DindentRight}),
		),
		mpb.AppendDecorators(
			decor.AverageSpeed(decor.SizeB1024(0), "% .1f", decor.WC{W: 14}),
			decor.Name(" ETA "),
			decor.AverageETA(decor.ET_STYLE_GO),
		),
	)
	return u
}

func (u *barUI) phaseOf(c string) string {
	u.pmu.Lock()
	defer u.pmu.Unlock()
	return u.phase[c]
}

func (u *barUI) setPhase(c, p string) {
	u.pmu.Lock()
	u.phase[c] = p
	u.pmu.Unlock()
}

func (u *barUI) event(e flash.Event) {
	b := u.bars[e.Card]
	if b == nil {
		return
	}
	var cur int64
	switch e.Phase {
	case flash.PhaseWrite:
		cur = e.Done
		u.setPhase(e.Card, fmt.Sprintf("%s %s", e.Phase, shortTarget(e.Target)))
	case flash.PhaseVerify:
		cur = u.mapped + e.Done
		u.setPhase(e.Card, fmt.Sprintf("%s %s", e.Phase, shortTarget(e.Target)))
	case flash.PhaseOverlay:
		cur = 2*u.mapped - 1 // complete only when done
		u.setPhase(e.Card, string(e.Phase))
	case flash.PhaseDone:
		cur = 2 * u.mapped
		u.setPhase(e.Card, string(e.Phase))
	case flash.PhaseFailed:
		u.setPhase(e.Card, "FAILED")
		// Count the card as finished in the total, so the ETA stays honest.
		cur = 2 * u.mapped
	}
	u.mu.Lock()
	d := cur - u.last[e.Card]
	if d > 0 {
		u.last[e.Card] = cur
	}
	u.mu.Unlock()
	if d > 0 {
		u.total.IncrInt64(d)
	}
	if e.Phase == flash.PhaseFailed {
		b.Abort(false)
		return
	}
	b.SetCurrent(cur)
}

func (u *barUI) wait() {
	for c, b := range u.bars {
		if !b.Completed() && !b.Aborted() {
			u.setPhase(c, "not written") // never started (a walk that was stopped)
			b.Abort(false)
		}
	}
	if !u.total.Completed() {
		u.total.Abort(false)
	}
	u.p.Wait()
}

func (u *barUI) say(format string, args ...any) {
	fmt.Fprintf(u.p, format+"\n", args...)
}

func shortTarget(t string) string {
	if len(t) > 5 && t[:5] == "/dev/" {
		return t[5:]
	}
	return t
}

// lineUI prints a line when a card changes phase and every quarter of a
// phase, for logs and pipes.
type lineUI struct {
	mu    sync.Mutex
	w     io.Writer
	start map[string]time.Time
	step  map[string]string
}

func newLineUI(w io.Writer) *lineUI {
	return &lineUI{w: w, start: map[string]time.Time{}, step: map[string]string{}}
}

func (u *lineUI) event(e flash.Event) {
	u.mu.Lock()
	defer u.mu.Unlock()
	key := string(e.Phase)
	if e.Total > 0 && (e.Phase == flash.PhaseWrite || e.Phase == flash.PhaseVerify) {
		key = fmt.Sprintf("%s %d%%", e.Phase, 25*(e.Done*4/e.Total))
	}
	if u.step[e.Card] == key {
		return
	}
	u.step[e.Card] = key
	pk := e.Card + "/" + string(e.Phase)
	if _, ok := u.start[pk]; !ok {
		u.start[pk] = time.Now()
	}
	switch e.Phase {
	case flash.PhaseDone, flash.PhaseFailed:
		return // the summary says it
	case flash.PhaseOverlay:
		if e.Done == 0 {
			fmt.Fprintf(u.w, "%s %s: writing the seed\n", e.Card, e.Target)
		}
		return
	}
	rate := ""
	if el := time.Since(u.start[pk]).Seconds(); el > 0.5 && e.Done > 0 {
		rate = fmt.Sprintf(", %.1f MB/s", float64(e.Done)/el/1e6)
	}
	fmt.Fprintf(u.w, "%s %s: %s (%s of %s%s)\n", e.Card, e.Target, key, image.HumanBytes(e.Done), image.HumanBytes(e.Total), rate)
}

func (u *lineUI) say(format string, args ...any) {
	u.mu.Lock()
	defer u.mu.Unlock()
	fmt.Fprintf(u.w, format+"\n", args...)
}

func (u *lineUI) wait() {}
