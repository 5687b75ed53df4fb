package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/rpi/flash"
	"github.com/fhlab/provision/internal/rpi/flash/flashtest"
	"github.com/fhlab/provision/internal/rpi/image"
)

const localLab = "../../inventory/local.yaml" // rack p2: pi-p2-01..03, boot: sd

// writeSeeds writes <dir>/<node>/{user-data,meta-data,network-config}.
func writeSeeds(t *testing.T, dir string, nodes ...string) map[string]map[string][]byte {
	t.Helper()
	all := map[string]map[string][]byte{}
	for _, n := range nodes {
		files := map[string][]byte{
			"/user-data":      []byte("#cloud-config\nhostname: " + n + "\n"),
			"/meta-data":      []byte("instance-id: " + n + "-1\nlocal-hostname: " + n + "\n"),
			"/network-config": []byte("version: 2\n"),
		}
		named := map[string][]byte{}
		for p, data := range files {
			named[strings.TrimPrefix(p, "/")] = data
		}
		if _, err := image.WriteSeedDir(filepath.Join(dir, n), image.SeedManifest{Node: n, Partition: 1}, named); err != nil {
			t.Fatal(err)
		}
		all[n] = files
	}
	return all
}

func emptyDir(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	if len(entries) > 0 {
		t.Fatalf("%s should be empty (nothing written), has %d entries", dir, len(entries))
	}
}

func TestFlashUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"flash", "--device", "/dev/null"}, "--image IMG is required without -i FILE"},
		{[]string{"flash", "-i", localLab, "--rack", "p2", "--to-file", "d"}, "rack p2 names no image"},
		{[]string{"flash", "--image", "x.img"}, "exactly one of --device"},
		{[]string{"flash", "--image", "x.img", "--to-file", "d", "--device", "/dev/null"}, "exactly one of --device"},
		{[]string{"flash", "--image", "x.img", "--to-file", "d", "--yes"}, "--yes is accepted only with --device"},
		{[]string{"flash", "--image", "x.img", "--watch", "--yes"}, "--yes is accepted only with --device"},
		{[]string{"flash", "--image", "x.img", "--watch"}, "--watch walks a rack"},
		{[]string{"flash", "--image", "x.img", "--to-file", "d", "-o", "yaml"}, `--output "yaml"`},
		{[]string{"flash", "--image", "x.img", "--to-file", "d"}, "--to-file writes one image per node"},
		{[]string{"flash", "--image", "x.img", "--to-file", "d", "--node", "a"}, "--node needs the seeds"},
		{[]string{"flash", "-i", localLab, "--rack", "r9", "--image", "x.img", "--to-file", "d"}, `has no rack "r9"`},
		{[]string{"flash", "-i", localLab, "--rack", "p2", "--node", "pi-p1-01", "--image", "x.img", "--to-file", "d"}, "--node pi-p1-01 is not in rack p2"},
	} {
		t.Run(strings.Join(tc.args[1:], " "), func(t *testing.T) {
			code, _, errs := runIn(t, "", tc.args...)
			if code != 2 || !strings.Contains(errs, tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, errs, tc.want)
			}
		})
	}
}

func TestFlashBadInputChangesNothing(t *testing.T) {
	dir := t.TempDir()
	img := flashtest.MakeImage(t, dir)
	seeds := filepath.Join(dir, "seeds")
	writeSeeds(t, seeds, "pi-p2-01", "pi-p2-02", "pi-p2-03")

	bare := filepath.Join(dir, "bare.img")
	os.WriteFile(bare, make([]byte, 1<<20), 0o644)

	badSum := filepath.Join(dir, "badsum.img")
	os.Link(img, badSum)
	bm, _ := os.ReadFile(img + ".bmap")
	os.WriteFile(badSum+".bmap", bytes.Replace(bm, []byte("<MappedBlocksCount> "), []byte("<MappedBlocksCount>  "), 1), 0o644)

	changed := filepath.Join(dir, "changed.img")
	data, _ := os.ReadFile(img)
	copy(data[flashtest.RootStart+4096:], "changed after its bmap was made")
	os.WriteFile(changed, data, 0o644)
	os.WriteFile(changed+".bmap", bm, 0o644)

	regular := filepath.Join(dir, "not-a-card")
	os.WriteFile(regular, []byte("keep me"), 0o644)

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"image without bmap", []string{"--image", bare}, "no block map"},
		{"bmap checksum mismatch", []string{"--image", badSum}, "BmapFileChecksum"},
		{"image does not match its bmap", []string{"--image", changed}, "does not match its block map"},
		{"rack with no seeds", []string{"--image", img, "--seeds", filepath.Join(dir, "no-seeds")}, "rack p2 has no seeds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			args := append([]string{"flash", "-i", localLab, "--rack", "p2", "--seeds", seeds, "--to-file", out}, tc.args...)
			code, _, errs := runIn(t, "", args...)
			if code == 0 || !strings.Contains(errs, tc.want) {
				t.Fatalf("exit %d, stderr %q; want %q", code, errs, tc.want)
			}
			emptyDir(t, out)
		})
	}
	t.Run("device is a regular file", func(t *testing.T) {
		code, _, errs := runIn(t, "", "flash", "--image", img, "--device", regular, "--yes")
		if code == 0 || !strings.Contains(errs, "is a regular file") || !strings.Contains(errs, "--to-file") {
			t.Fatalf("exit %d, stderr %q", code, errs)
		}
		if b, _ := os.ReadFile(regular); string(b) != "keep me" {
			t.Fatalf("the file was changed: %q", b)
		}
	})
	t.Run("loop device needs --allow-non-removable, and an answer", func(t *testing.T) {
		dev, backing := flashtest.LoopDev(t, 128<<20)
		before, _ := os.ReadFile(backing)
		code, _, errs := runIn(t, "", "flash", "--image", img, "--device", dev, "--yes")
		if code == 0 || !strings.Contains(errs, "--allow-non-removable") {
			t.Fatalf("exit %d, stderr %q", code, errs)
		}
		code, _, errs = runIn(t, "no\n", "flash", "--image", img, "--device", dev, "--allow-non-removable")
		if code == 0 || !strings.Contains(errs, "not confirmed; nothing was written") || !strings.Contains(errs, "PARTITIONS NOW") {
			t.Fatalf("exit %d, stderr %q", code, errs)
		}
		if after, _ := os.ReadFile(backing); !bytes.Equal(before, after) {
			t.Fatal("the card was changed")
		}
	})
}

func TestFlashRackToLoopDevices(t *testing.T) {
	dir := t.TempDir()
	img := flashtest.MakeImage(t, dir)
	seeds := filepath.Join(dir, "seeds")
	want := writeSeeds(t, seeds, "pi-p2-01", "pi-p2-02", "pi-p2-03")
	var devs, backings []string
	for range 3 {
		d, b := flashtest.LoopDev(t, 128<<20)
		devs, backings = append(devs, d), append(backings, b)
	}
	code, out, errs := runIn(t, "", "flash", "-i", localLab, "--rack", "p2", "--seeds", seeds, "--image", img,
		"--device", strings.Join(devs, ","), "--yes", "--allow-non-removable", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var doc struct {
		Mapped int64
		Cards  []flash.Result
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if len(doc.Cards) != 3 {
		t.Fatalf("cards: %+v", doc.Cards)
	}
	for i, c := range doc.Cards {
		node := fmt.Sprintf("pi-p2-%02d", i+1)
		if !c.OK || c.Card != node || c.Target != devs[i] || c.Verified != doc.Mapped || len(c.Overlay) != 3 {
			t.Fatalf("card %d: %+v", i, c)
		}
		flashtest.CheckBootPartition(t, backings[i], want[node])
	}
	if !strings.Contains(errs, "PARTITIONS NOW") || !strings.Contains(errs, "loop device over") {
		t.Fatalf("the devices were not shown before writing:\n%s", errs)
	}
}

func TestFlashToFilePerNode(t *testing.T) {
	dir := t.TempDir()
	img := flashtest.MakeImage(t, dir)
	seeds := filepath.Join(dir, "seeds")
	want := writeSeeds(t, seeds, "pi-p2-01", "pi-p2-02", "pi-p2-03")
	out := filepath.Join(dir, "cards")
	code, stdout, errs := runIn(t, "", "flash", "-i", localLab, "--rack", "p2", "--node", "pi-p2-02", "--seeds", seeds, "--image", img, "--to-file", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(stdout, "pi-p2-02") || !strings.Contains(stdout, "done:") || !strings.Contains(errs, "verify") {
		t.Fatalf("stdout %q\nstderr %q", stdout, errs)
	}
	entries, _ := os.ReadDir(out)
	if len(entries) != 1 || entries[0].Name() != "pi-p2-02.img" {
		t.Fatalf("files: %v", entries)
	}
	flashtest.CheckBootPartition(t, filepath.Join(out, "pi-p2-02.img"), want["pi-p2-02"])
	if strings.Contains(errs, "unchanged since") {
		t.Errorf("the first run did not check the image:\n%s", errs)
	}

	// The image checked, unchanged: the next run does not read it against
	// its map again, unless --recheck.
	for _, c := range []struct {
		flag  string
		stamp bool
	}{{"", true}, {"--recheck", false}} {
		args := []string{"flash", "-i", localLab, "--rack", "p2", "--node", "pi-p2-01", "--seeds", seeds, "--image", img, "--to-file", out}
		if c.flag != "" {
			args = append(args, c.flag)
		}
		code, _, errs := runIn(t, "", args...)
		if code != 0 || strings.Contains(errs, "unchanged since it matched its block map") != c.stamp {
			t.Errorf("flash %s: exit %d, want the stamp used: %v\n%s", c.flag, code, c.stamp, errs)
		}
	}
	flashtest.CheckBootPartition(t, filepath.Join(out, "pi-p2-01.img"), want["pi-p2-01"])
}

// TestFlashWithoutImageUsesTheRacksBuiltImage: -i FILE --rack R without
// --image flashes the golden image pis.image names, from the state dir
// where `provision image build` left it, and says which.
func TestFlashWithoutImageUsesTheRacksBuiltImage(t *testing.T) {
	dir := t.TempDir()
	inv := filepath.Join(dir, "lab.yaml")
	lab, err := os.ReadFile(localLab)
	if err != nil {
		t.Fatal(err)
	}
	lab = bytes.Replace(lab, []byte("\npis:\n"), []byte("\npis:\n  image: debian-pi4\n"), 1)
	if err := os.WriteFile(inv, lab, 0o644); err != nil {
		t.Fatal(err)
	}
	csv, err := os.ReadFile(filepath.Join(filepath.Dir(localLab), "racks", "local-p1.csv"))
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "racks"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, "racks", "local-p1.csv"), csv, 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	seeds := filepath.Join(dir, "seeds")
	want := writeSeeds(t, seeds, "pi-p2-01")
	args := []string{"flash", "-i", inv, "--state-dir", state, "--rack", "p2", "--node", "pi-p2-01", "--seeds", seeds, "--to-file", filepath.Join(dir, "cards")}

	code, _, errs := runIn(t, "", args...)
	if code == 0 || !strings.Contains(errs, "image debian-pi4 is not built yet") || !strings.Contains(errs, "provision image build") {
		t.Fatalf("no image built: exit %d, stderr %q", code, errs)
	}

	built := filepath.Join(state, "images", "debian-pi4")
	os.MkdirAll(built, 0o755)
	img := flashtest.MakeImage(t, built)
	for _, ext := range []string{"", ".bmap"} {
		if err := os.Rename(img+ext, filepath.Join(built, "debian-pi4.img"+ext)); err != nil {
			t.Fatal(err)
		}
	}
	m, _ := json.Marshal(image.Manifest{Name: "debian-pi4", InputHash: "0123456789abcdef", Image: "debian-pi4.img"})
	if err := os.WriteFile(filepath.Join(built, "debian-pi4.img.manifest.json"), m, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs = runIn(t, "", args...)
	if code != 0 || !strings.Contains(errs, "image: "+filepath.Join(built, "debian-pi4.img")+" (debian-pi4") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	flashtest.CheckBootPartition(t, filepath.Join(dir, "cards", "pi-p2-01.img"), want["pi-p2-01"])
}

func TestFlashBarsDrawOneBarPerCardAndATotal(t *testing.T) {
	var buf bytes.Buffer
	u := newBarUI(&buf, []string{"pi-r1-01", "pi-r1-02"}, 100<<20, true)
	for _, c := range []string{"pi-r1-01", "pi-r1-02"} {
		u.event(flash.Event{Card: c, Target: "/dev/sdx", Phase: flash.PhaseWrite, Done: 50 << 20, Total: 100 << 20})
	}
	u.event(flash.Event{Card: "pi-r1-01", Phase: flash.PhaseDone})
	u.event(flash.Event{Card: "pi-r1-02", Phase: flash.PhaseFailed})
	u.wait()
	s := buf.String()
	for _, w := range []string{"pi-r1-01", "pi-r1-02", "total", "ETA", "FAILED"} {
		if !strings.Contains(s, w) {
			t.Fatalf("bars lack %q:\n%s", w, s)
		}
	}
}

func TestFlashNoBmapFindsTheData(t *testing.T) {
	dir := t.TempDir()
	img := flashtest.MakeImage(t, dir)
	bare := filepath.Join(dir, "nomap.img")
	flashtest.Run(t, "cp", "--sparse=always", img, bare)
	seeds := filepath.Join(dir, "seeds")
	want := writeSeeds(t, seeds, "pi-p2-01")
	out := filepath.Join(dir, "cards")
	code, _, errs := runIn(t, "", "flash", "--node", "pi-p2-01", "--seeds", seeds, "--image", bare, "--to-file", out)
	if code == 0 || !strings.Contains(errs, "--no-bmap") {
		t.Fatalf("without a bmap: exit %d: %s", code, errs)
	}
	code, _, errs = runIn(t, "", "flash", "--node", "pi-p2-01", "--seeds", seeds, "--image", bare, "--no-bmap", "--to-file", out)
	if code != 0 {
		t.Fatalf("--no-bmap: exit %d: %s", code, errs)
	}
	flashtest.CheckBootPartition(t, filepath.Join(out, "pi-p2-01.img"), want["pi-p2-01"])
}

// cancelOn cancels when a line containing trigger is written: Ctrl-C at a
// known point of the run.
type cancelOn struct {
	bytes.Buffer
	trigger string
	cancel  context.CancelFunc
}

func (w *cancelOn) Write(p []byte) (int, error) {
	n, err := w.Buffer.Write(p)
	if strings.Contains(w.String(), w.trigger) {
		w.cancel()
	}
	return n, err
}

func TestFlashCtrlCLeavesCardsWithoutPartitionTable(t *testing.T) {
	dir := t.TempDir()
	img := flashtest.MakeImage(t, dir)
	seeds := filepath.Join(dir, "seeds")
	writeSeeds(t, seeds, "pi-p2-01", "pi-p2-02")
	var devs []string
	for range 2 {
		d, _ := flashtest.LoopDev(t, 128<<20) // starts with an old partition table
		devs = append(devs, d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errw := &cancelOn{trigger: "write 50%", cancel: cancel}
	var out bytes.Buffer
	code := Run(ctx, []string{"flash", "--node", "pi-p2-01", "--node", "pi-p2-02", "--seeds", seeds, "--image", img,
		"--device", strings.Join(devs, ","), "--yes", "--allow-non-removable"}, Streams{In: strings.NewReader(""), Out: &out, Err: errw})
	if code != 130 {
		t.Fatalf("exit %d, want 130\n%s\n%s", code, out.String(), errw.String())
	}
	if !strings.Contains(errw.String(), "left without a partition table") || !strings.Contains(out.String(), "stopped during") {
		t.Fatalf("does not say what became of the cards:\n%s\n%s", out.String(), errw.String())
	}
	// A card that finished before the Ctrl-C is done; every other one must
	// have no partition table.
	stopped := 0
	for _, d := range devs {
		if strings.Contains(out.String(), d+"  done:") {
			continue
		}
		stopped++
		if has, err := flash.HasPartitionTable(d); err != nil || has {
			t.Fatalf("%s has a partition table after Ctrl-C (%v)", d, err)
		}
	}
	if stopped == 0 {
		t.Fatalf("no card was stopped:\n%s", out.String())
	}
	t.Logf("\n%s%s", out.String(), errw.String())
}

// The bars' decorators read the cards' phases while events update them:
// events arriving during redraws must not deadlock (they did once, on a
// real terminal, when event held the lock the decorator waits for).
func TestFlashBarsSurviveEventsDuringRedraws(t *testing.T) {
	var buf bytes.Buffer
	cards := []string{"pi-r1-01", "pi-r1-02", "pi-r1-03"}
	const n = 200000
	u := newBarUI(&buf, cards, n, true)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for i := int64(1); i <= n; i++ {
			for _, c := range cards {
				u.event(flash.Event{Card: c, Target: "/dev/sdx", Phase: flash.PhaseWrite, Done: i, Total: n})
			}
		}
		for _, c := range cards {
			u.event(flash.Event{Card: c, Phase: flash.PhaseDone})
		}
		u.wait()
	}()
	select {
	case <-finished:
	case <-time.After(time.Minute):
		t.Fatal("the progress bars deadlocked")
	}
}

// lineSignal passes every written line containing "insert the card for"
// to asked.
type lineSignal struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	asked chan string
}

func (w *lineSignal) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, line := range strings.Split(string(p), "\n") {
		if name, ok := strings.CutPrefix(line, "insert the card for "); ok {
			w.asked <- name
		}
	}
	return w.buf.Write(p)
}

func TestFlashWatchWalksTheRackInSlotOrder(t *testing.T) {
	dir := t.TempDir()
	img := flashtest.MakeImage(t, dir)
	seeds := filepath.Join(dir, "seeds")
	want := writeSeeds(t, seeds, "pi-p2-01", "pi-p2-02", "pi-p2-03")
	var mu sync.Mutex
	ours := map[string]string{} // device -> backing file
	errw := &lineSignal{asked: make(chan string, 3)}
	var out bytes.Buffer
	a := newApp(Streams{In: strings.NewReader("yes\n"), Out: &out, Err: errw}, nil)
	a.settings.Inventory = localLab
	a.settings.StateDir = t.TempDir()
	f := flashFlags{image: img, rack: "p2", seeds: seeds, watch: true, allowNonRemovable: true, output: "text",
		watchFilter: func(d *flash.Device) bool {
			mu.Lock()
			defer mu.Unlock()
			_, ok := ours[d.Path]
			return ok
		}}
	done := make(chan error, 1)
	go func() { done <- a.runFlash(context.Background(), f) }()
	var order []string
	for range 3 {
		select {
		case name := <-errw.asked:
			order = append(order, name)
		case err := <-done:
			t.Fatalf("the walk ended early: %v\n%s", err, errw.buf.String())
		case <-time.After(time.Minute):
			t.Fatal("the walk did not ask for the next card")
		}
		dev, backing := flashtest.LoopDev(t, 128<<20) // the card goes in
		mu.Lock()
		ours[dev] = backing
		mu.Unlock()
	}
	if err := <-done; err != nil {
		t.Fatalf("%v\n%s", err, errw.buf.String())
	}
	if got := strings.Join(order, ","); got != "pi-p2-01,pi-p2-02,pi-p2-03" {
		t.Fatalf("asked in the order %s", got)
	}
	if !strings.Contains(errw.buf.String(), "Rack p2: 3 cards in slot order") {
		t.Fatalf("no plan shown before the walk:\n%s", errw.buf.String())
	}
	for dev, backing := range ours {
		var node string
		for _, line := range strings.Split(out.String(), "\n") {
			if f := strings.Fields(line); len(f) > 2 && f[1] == dev && f[2] == "done:" {
				node = f[0]
			}
		}
		if node == "" {
			t.Fatalf("%s not reported done:\n%s", dev, out.String())
		}
		flashtest.CheckBootPartition(t, backing, want[node])
	}
}
