package flash

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// A rack walk: cards appear one by one (loop devices attached after the
// walk asked for them); the second is pulled mid-write, fails alone, and
// the walk goes on to the third.
func TestWalkFlashesCardsAsTheyAppear(t *testing.T) {
	dir := t.TempDir()
	img := makeImage(t, dir)
	im := openTestImage(t, img)
	sys := DefaultSystem()

	var mu sync.Mutex
	backing := map[string]string{} // device -> backing file, of this test's cards only
	w := &Watcher{Sys: sys, Interval: 50 * time.Millisecond, Filter: func(d *Device) bool {
		mu.Lock()
		defer mu.Unlock()
		_, ok := backing[d.Path]
		return ok
	}}
	cards := []Card{{Name: "pi-r1-01"}, {Name: "pi-r1-02"}, {Name: "pi-r1-03"}}
	for i := range cards {
		cards[i].Overlay = testOverlay(cards[i].Name)
	}
	var pulled sync.Once
	fl := &Flasher{Image: im, Progress: func(e Event) {
		if e.Card == "pi-r1-02" && e.Phase == PhaseWrite && e.Done > 0 {
			pulled.Do(func() {
				mu.Lock()
				b := backing[e.Target]
				mu.Unlock()
				os.Truncate(b, 0)
				run(t, "losetup", "-c", e.Target)
			})
		}
	}}
	asked := make(chan string)
	done := make(chan []Result)
	go func() {
		done <- fl.Walk(context.Background(), w, cards, func(c Card) { asked <- c.Name }, func(d *Device) error {
			return sys.Check(d, im.Size, CheckOptions{AllowNonRemovable: true})
		})
	}()
	var order []string
	for range cards {
		var name string
		select {
		case name = <-asked:
		case <-time.After(time.Minute):
			t.Fatal("the walk did not ask for the next card")
		}
		order = append(order, name)
		time.Sleep(100 * time.Millisecond) // the card is inserted a moment later
		dev, b := loopDev(t, 128<<20)
		mu.Lock()
		backing[dev] = b
		mu.Unlock()
	}
	res := <-done
	if got := strings.Join(order, ","); got != "pi-r1-01,pi-r1-02,pi-r1-03" {
		t.Fatalf("asked for %s", got)
	}
	if !res[0].OK || !res[2].OK {
		t.Fatalf("cards 1 and 3: %+v / %+v", res[0], res[2])
	}
	if res[1].OK || !strings.Contains(res[1].Error, "removed during write") {
		t.Fatalf("card 2 was pulled: %+v", res[1])
	}
	for _, i := range []int{0, 2} {
		mu.Lock()
		b := backing[res[i].Target]
		mu.Unlock()
		checkBootPartition(t, b, cards[i].Overlay)
	}
	t.Log(res[1].Error)
}
