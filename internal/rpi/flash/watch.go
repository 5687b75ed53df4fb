package flash

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Watcher finds cards as they are inserted, by polling /sys/block: a disk
// that was not there (or had no medium, size 0) and now has one is a new
// card. Polling needs no udev daemon and works the same in containers.
type Watcher struct {
	Sys      System
	Interval time.Duration
	// Filter, when set, must accept a device for it to count as a card
	// (tests use it to see only their own loop devices).
	Filter func(*Device) bool
	// Refused is told about a new device that Check or Filter turned down.
	Refused func(*Device, error)

	known map[string]bool
}

// ignored are kernel devices that are never cards.
var ignored = []string{"ram", "zram", "dm-", "md", "sr", "nbd", "nvme", "fd"}

// present lists the names of disks with a medium.
func (w *Watcher) present() map[string]bool {
	out := map[string]bool{}
	entries, _ := os.ReadDir(filepath.Join(w.Sys.Sys, "block"))
	for _, e := range entries {
		name := e.Name()
		if slices.ContainsFunc(ignored, func(p string) bool { return strings.HasPrefix(name, p) }) {
			continue
		}
		if s := readTrim(filepath.Join(w.Sys.Sys, "block", name, "size")); s == "" || s == "0" {
			continue
		}
		out[name] = true
	}
	return out
}

// Start notes the disks present now: they are not new cards.
func (w *Watcher) Start() {
	w.known = w.present()
}

// Next waits for a new card that passes check and returns it. Disks that
// go away are forgotten, so a card pulled and put back counts again.
func (w *Watcher) Next(ctx context.Context, check func(*Device) error) (*Device, error) {
	if w.known == nil {
		w.Start()
	}
	iv := w.Interval
	if iv <= 0 {
		iv = 250 * time.Millisecond
	}
	tick := time.NewTicker(iv)
	defer tick.Stop()
	for {
		now := w.present()
		for name := range w.known {
			if !now[name] {
				delete(w.known, name)
			}
		}
		names := make([]string, 0, len(now))
		for name := range now {
			if !w.known[name] {
				names = append(names, name)
			}
		}
		slices.Sort(names)
		for _, name := range names {
			d, err := w.Sys.Inspect("/dev/" + name)
			if err != nil {
				continue // not (yet) a usable node; look again next time
			}
			if w.Filter != nil && !w.Filter(d) {
				continue
			}
			w.known[name] = true
			if err := check(d); err != nil {
				if w.Refused != nil {
					w.Refused(d, err)
				}
				continue
			}
			return d, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
}

// Walk flashes cards in order as they are inserted: for each it calls
// announce (to ask for the card), waits for a new device that passes
// check, then flashes it in the background and moves to the next. A card
// that fails (pulled mid-write, failed verification) fails alone; the walk
// goes on. Results are in the order of cards.
func (fl *Flasher) Walk(ctx context.Context, w *Watcher, cards []Card, announce func(Card), check func(*Device) error) []Result {
	res := make([]Result, len(cards))
	var wg sync.WaitGroup
	w.Start()
	for i, c := range cards {
		if announce != nil {
			announce(c)
		}
		d, err := w.Next(ctx, check)
		if err != nil {
			for j := i; j < len(cards); j++ {
				res[j] = Result{Card: cards[j].Name, Err: fmt.Errorf("%s: no card inserted: %w", cards[j].Name, err)}
				res[j].Error = res[j].Err.Error()
				res[j].Note = "nothing was written"
			}
			break
		}
		c.Target = d.Path
		wg.Go(func() { res[i] = fl.Flash(ctx, c) })
	}
	wg.Wait()
	return res
}
