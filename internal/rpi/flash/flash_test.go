package flash

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fhlab/provision/internal/rpi/flash/flashtest"
)

func TestFlashSparseImageToLoopDevice(t *testing.T) {
	img := makeImage(t, t.TempDir())
	im := openTestImage(t, img)
	if im.Map.MappedBytes() >= im.Size/2 {
		t.Fatalf("test image is not sparse: %d of %d bytes mapped", im.Map.MappedBytes(), im.Size)
	}
	dev, backing := loopDev(t, 128<<20)
	ov := testOverlay("pi-r1-01")
	var phases []Phase
	fl := &Flasher{Image: im, Progress: func(e Event) {
		if len(phases) == 0 || phases[len(phases)-1] != e.Phase {
			phases = append(phases, e.Phase)
		}
	}}
	res := fl.Flash(context.Background(), Card{Name: "pi-r1-01", Target: dev, Overlay: ov})
	if !res.OK {
		t.Fatalf("flash %s: %v (%s)", dev, res.Err, res.Note)
	}
	if res.Written != im.Map.MappedBytes() || res.Verified != im.Map.MappedBytes() {
		t.Fatalf("written %d, verified %d, want %d mapped bytes each", res.Written, res.Verified, im.Map.MappedBytes())
	}
	if got := fmt.Sprint(phases); got != "[write verify overlay done]" {
		t.Fatalf("phases %s", got)
	}
	// Every mapped range except the boot partition (which the seed changed)
	// equals the image; the hole at 8 MiB keeps the card's old bytes.
	sameMapped(t, im, backing, func(off int64) bool { return off >= bootStart && off < rootStart })
	b := make([]byte, 16)
	f, _ := os.Open(backing)
	f.ReadAt(b, 8<<20)
	f.Close()
	if b[0] != 0xEE {
		t.Fatalf("a hole of the image was written: %x", b)
	}
	checkBootPartition(t, backing, ov)
	requireTools(t, "e2fsck")
	run(t, "e2fsck", "-fn", fmt.Sprintf("%s?offset=%d", backing, rootStart))
}

func TestFlashParallelFourLoopDevices(t *testing.T) {
	img := makeImage(t, t.TempDir())
	im := openTestImage(t, img)
	var cards []Card
	backings := map[string]string{}
	for i := range 4 {
		dev, backing := loopDev(t, int64(100+i*10)<<20)
		name := fmt.Sprintf("pi-r1-%02d", i+1)
		cards = append(cards, Card{Name: name, Target: dev, Overlay: testOverlay(name)})
		backings[name] = backing
	}
	// Each card waits at its first write until all four have started: the
	// run finishes only if they are written at the same time.
	var started sync.WaitGroup
	started.Add(len(cards))
	allStarted := make(chan struct{})
	go func() { started.Wait(); close(allStarted) }()
	var mu sync.Mutex
	first := map[string]bool{}
	fl := &Flasher{Image: im, Progress: func(e Event) {
		mu.Lock()
		isFirst := !first[e.Card]
		first[e.Card] = true
		mu.Unlock()
		if isFirst {
			started.Done()
			select {
			case <-allStarted:
			case <-time.After(time.Minute):
				t.Errorf("%s: the other cards did not start while it was being written", e.Card)
			}
		}
	}}
	for i, res := range fl.FlashAll(context.Background(), cards) {
		if !res.OK || res.Card != cards[i].Name {
			t.Fatalf("card %d: %+v", i, res)
		}
		checkBootPartition(t, backings[res.Card], cards[i].Overlay)
	}
}

func TestCorruptionAfterWriteIsDetectedAndNamed(t *testing.T) {
	img := makeImage(t, t.TempDir())
	im := openTestImage(t, img)
	dev, backing := loopDev(t, 128<<20)
	// The last mapped range lies in the ext4 root, past the boot partition.
	r := im.Map.Ranges[len(im.Map.Ranges)-1]
	off := r.Offset(im.Map.BlockSize)
	corrupt := func() {
		f, err := os.OpenFile(backing, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteAt([]byte("bit rot"), off+100)
		f.Close()
	}

	t.Run("during a flash: the card fails and is left without a partition table", func(t *testing.T) {
		fl := &Flasher{Image: im, beforeReadBack: func(_ Card, rr Range) error {
			if rr.First == r.First {
				corrupt()
			}
			return nil
		}}
		res := fl.Flash(context.Background(), Card{Name: "pi-r1-01", Target: dev})
		var ve *VerifyError
		if res.OK || !errors.As(res.Err, &ve) {
			t.Fatalf("want a verify error, got %+v", res)
		}
		if ve.Range.First != r.First || ve.Want != r.SHA256 || ve.Got == r.SHA256 {
			t.Fatalf("verify error names %s want %s got %s; the corrupted range is %s %s", ve.Range, ve.Want, ve.Got, r, r.SHA256)
		}
		if !strings.Contains(res.Error, r.String()) || !strings.Contains(res.Error, r.SHA256) {
			t.Fatalf("error does not name the range and the expected sum: %s", res.Error)
		}
		if has, err := HasPartitionTable(dev); err != nil || has || !res.Cleared {
			t.Fatalf("card after a failed verify: partition table %v (%v), cleared %v", has, err, res.Cleared)
		}
	})

	t.Run("after a good flash: Verify names the damaged range", func(t *testing.T) {
		res := (&Flasher{Image: im}).Flash(context.Background(), Card{Name: "pi-r1-01", Target: dev})
		if !res.OK {
			t.Fatal(res.Err)
		}
		if _, err := Verify(context.Background(), dev, im); err != nil {
			t.Fatalf("verify a good card: %v", err)
		}
		corrupt()
		_, err := Verify(context.Background(), dev, im)
		var ve *VerifyError
		if !errors.As(err, &ve) || ve.Range.First != r.First || ve.Offset != off {
			t.Fatalf("want the damage at %s named, got %v", r, err)
		}
		t.Log(err)
	})
}

func TestInterruptedWriteLeavesNoPartitionTable(t *testing.T) {
	img := makeImage(t, t.TempDir())
	im := openTestImage(t, img)
	dev, _ := loopDev(t, 128<<20)
	for _, stopAt := range []Phase{PhaseWrite, PhaseVerify, PhaseOverlay} {
		t.Run(string(stopAt), func(t *testing.T) {
			// A good card first: it has a partition table to lose.
			if res := (&Flasher{Image: im}).Flash(context.Background(), Card{Name: "pi", Target: dev}); !res.OK {
				t.Fatal(res.Err)
			}
			if has, _ := HasPartitionTable(dev); !has {
				t.Fatal("a flashed card has no partition table")
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			fl := &Flasher{Image: im, Progress: func(e Event) {
				// Mid-phase: past a third of the bytes, and never at the
				// last range (after which the phase would be over).
				if e.Phase == stopAt && (stopAt == PhaseOverlay || e.Done > e.Total/3 && e.Done < e.Total) {
					cancel() // Ctrl-C
				}
			}}
			if stopAt == PhaseVerify {
				// The read-back runs beside the writes; what is left for the
				// verify phase is the range holding the first MiB, read
				// once that is written last: stop there.
				fl.beforeReadBack = func(_ Card, r Range) error {
					if r.First == 0 {
						cancel()
					}
					return nil
				}
			}
			res := fl.Flash(ctx, Card{Name: "pi", Target: dev, Overlay: testOverlay("pi")})
			if res.OK || !errors.Is(res.Err, context.Canceled) {
				t.Fatalf("want stopped, got %+v", res)
			}
			if !strings.Contains(res.Error, "stopped during "+string(stopAt)) || !res.Cleared || !strings.Contains(res.Note, "without a partition table") {
				t.Fatalf("result does not say where it stopped and that the card is cleared: %s / %s", res.Error, res.Note)
			}
			if has, err := HasPartitionTable(dev); err != nil || has {
				t.Fatalf("interrupted card still has a partition table (%v)", err)
			}
			t.Logf("%s; %s", res.Error, res.Note)
		})
	}
}

func TestCardPulledMidWrite(t *testing.T) {
	img := makeImage(t, t.TempDir())
	im := openTestImage(t, img)
	dev, backing := loopDev(t, 128<<20)
	var once sync.Once
	fl := &Flasher{Image: im, Progress: func(e Event) {
		if e.Phase == PhaseWrite && e.Done > 0 {
			// Pull the card: the medium goes away under the open device
			// (losetup -d only detaches a loop device once it is closed).
			once.Do(func() {
				os.Truncate(backing, 0)
				run(t, "losetup", "-c", dev)
			})
		}
	}}
	res := fl.Flash(context.Background(), Card{Name: "pi-r1-05", Target: dev})
	if res.OK || !strings.Contains(res.Error, "removed during write") {
		t.Fatalf("want the card reported removed, got %+v", res)
	}
	t.Log(res.Error)
}

func TestToFileWritesSparseImagePerNode(t *testing.T) {
	img := makeImage(t, t.TempDir())
	im := openTestImage(t, img)
	out := t.TempDir()
	ov := testOverlay("pi-r2-01")
	path := ImageFileName(out, "pi-r2-01")
	res := (&Flasher{Image: im}).Flash(context.Background(), Card{Name: "pi-r2-01", Target: path, ToFile: true, Overlay: ov})
	if !res.OK {
		t.Fatal(res.Err)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != im.Size || st.Blocks*512 > im.Map.MappedBytes()+(2<<20) {
		t.Fatalf("%s: size %d (want %d), %d bytes allocated for %d mapped: not sparse", path, st.Size, im.Size, st.Blocks*512, im.Map.MappedBytes())
	}
	checkBootPartition(t, path, ov)
	if has, _ := HasPartitionTable(path); !has {
		t.Fatal("no partition table in the written file")
	}
}

func TestFlashRefusesUnusableTargets(t *testing.T) {
	img := makeImage(t, t.TempDir())
	im := openTestImage(t, img)
	sys := DefaultSystem()
	opt := CheckOptions{AllowNonRemovable: true}

	t.Run("mounted", func(t *testing.T) {
		requireTools(t, "mount", "umount", "mke2fs")
		dev, _ := loopDev(t, 128<<20)
		run(t, "mke2fs", "-q", "-F", "-t", "ext4", dev)
		mnt := t.TempDir()
		run(t, "mount", dev, mnt)
		t.Cleanup(func() { exec.Command("umount", mnt).Run() })
		d, err := sys.Inspect(dev)
		if err != nil {
			t.Fatal(err)
		}
		err = sys.Check(d, im.Size, opt)
		if err == nil || !strings.Contains(err.Error(), "mounted on "+mnt) {
			t.Fatalf("mounted device: %v", err)
		}
		// Even past the check, the exclusive open refuses it.
		res := (&Flasher{Image: im}).Flash(context.Background(), Card{Name: "x", Target: dev})
		if res.OK || !strings.Contains(res.Error, "in use") || res.Written != 0 {
			t.Fatalf("flash of a mounted device: %+v", res)
		}
	})
	t.Run("a partition of it mounted", func(t *testing.T) {
		requireTools(t, "mount", "umount")
		dev := flashtest.LoopDevPartitioned(t, img)
		part := partitionNode(t, dev, 2)
		mnt := t.TempDir()
		run(t, "mount", "-o", "ro", part, mnt)
		t.Cleanup(func() { exec.Command("umount", mnt).Run() })
		d, err := sys.Inspect(dev)
		if err != nil {
			t.Fatal(err)
		}
		if len(d.Partitions) != 2 {
			t.Fatalf("partitions of %s: %+v", dev, d.Partitions)
		}
		err = sys.Check(d, im.Size, opt)
		if err == nil || !strings.Contains(err.Error(), filepath.Base(dev)+"p2 is mounted on "+mnt) {
			t.Fatalf("disk with a mounted partition: %v", err)
		}
		if _, err := sys.Inspect(part); err == nil || !strings.Contains(err.Error(), "name the whole disk") {
			t.Fatalf("a partition as the device: %v", err)
		}
		res := (&Flasher{Image: im}).Flash(context.Background(), Card{Name: "x", Target: dev})
		if res.OK || !strings.Contains(res.Error, "in use") {
			t.Fatalf("flash of a disk with a mounted partition: %+v", res)
		}
	})
	t.Run("too small", func(t *testing.T) {
		dev, _ := loopDev(t, 64<<20)
		d, err := sys.Inspect(dev)
		if err != nil {
			t.Fatal(err)
		}
		if err := sys.Check(d, im.Size, opt); err == nil || !strings.Contains(err.Error(), "smaller than the image") {
			t.Fatalf("small device: %v", err)
		}
	})
	t.Run("loop device without --allow-non-removable", func(t *testing.T) {
		dev, _ := loopDev(t, 128<<20)
		d, err := sys.Inspect(dev)
		if err != nil {
			t.Fatal(err)
		}
		if err := sys.Check(d, im.Size, CheckOptions{}); err == nil || !strings.Contains(err.Error(), "--allow-non-removable") {
			t.Fatalf("loop device: %v", err)
		}
		if err := sys.Check(d, im.Size, opt); err != nil {
			t.Fatalf("loop device with --allow-non-removable: %v", err)
		}
	})
	t.Run("root disk", func(t *testing.T) {
		root := rootDisk(t)
		d, err := sys.Inspect(root)
		if err != nil {
			t.Fatal(err)
		}
		if err := sys.Check(d, 0, opt); err == nil || !strings.Contains(err.Error(), "root filesystem") {
			t.Fatalf("root disk %s: %v", root, err)
		}
	})
	t.Run("regular file", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "card")
		os.WriteFile(f, []byte("keep me"), 0o600)
		if _, err := sys.Inspect(f); err == nil || !strings.Contains(err.Error(), "--to-file") {
			t.Fatalf("regular file: %v", err)
		}
	})
	t.Run("swap", func(t *testing.T) {
		requireTools(t, "mkswap", "swapon", "swapoff")
		dev, _ := loopDev(t, 128<<20)
		run(t, "mkswap", dev)
		if out, err := exec.Command("swapon", dev).CombinedOutput(); err != nil {
			t.Skipf("swapon %s not possible here: %v %s", dev, err, out)
		}
		t.Cleanup(func() { exec.Command("swapoff", dev).Run() })
		d, _ := sys.Inspect(dev)
		if err := sys.Check(d, im.Size, opt); err == nil || !strings.Contains(err.Error(), "swap") {
			t.Fatalf("swap device: %v", err)
		}
	})
}

// rootDisk is the whole disk under / (through partitions and dm).
func rootDisk(t *testing.T) string {
	t.Helper()
	sys := DefaultSystem()
	ms, err := sys.mounts()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Point != "/" {
			continue
		}
		for _, dev := range sys.underlying(m.Dev) {
			dir, err := filepath.EvalSymlinks("/sys/dev/block/" + dev)
			if err != nil {
				continue
			}
			_, perr := os.Stat(filepath.Join(dir, "partition"))
			slaves, _ := os.ReadDir(filepath.Join(dir, "slaves"))
			if os.IsNotExist(perr) && len(slaves) == 0 {
				if _, err := os.Stat("/dev/" + filepath.Base(dir)); err == nil {
					return "/dev/" + filepath.Base(dir)
				}
			}
		}
	}
	skipOrFail(t, "/ is not on a block device here (overlay or network root)")
	return ""
}

// partitionNode is the device node of partition n of dev: /dev/<dev>pN when
// udev made it, else one made here from sysfs (containers have no udev).
func partitionNode(t *testing.T, dev string, n int) string {
	t.Helper()
	name := fmt.Sprintf("%sp%d", filepath.Base(dev), n)
	var mm string
	for i := 0; i < 50; i++ {
		if b, err := os.ReadFile("/sys/class/block/" + name + "/dev"); err == nil {
			mm = strings.TrimSpace(string(b))
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if mm == "" {
		t.Fatalf("no partition %s in sysfs", name)
	}
	if _, err := os.Stat("/dev/" + name); err == nil {
		return "/dev/" + name
	}
	var major, minor uint32
	fmt.Sscanf(mm, "%d:%d", &major, &minor)
	node := filepath.Join(t.TempDir(), name)
	if err := unix.Mknod(node, unix.S_IFBLK|0o600, int(unix.Mkdev(major, minor))); err != nil {
		t.Fatalf("mknod %s: %v", node, err)
	}
	return node
}

// TestReadBackRunsBesideTheWrites: ranges past the first MiB are read back
// from the card while later ones are still being written, not in a pass
// after the write. The readers run in parallel, so the order in which the
// hook sees ranges is not checked here (TestReadBackOrder does that).
func TestReadBackRunsBesideTheWrites(t *testing.T) {
	img := makeImage(t, t.TempDir())
	im := openTestImage(t, img)
	dev, _ := loopDev(t, 128<<20)
	var (
		mu        sync.Mutex
		writeDone bool
		readEarly []string
		readAfter int
	)
	fl := &Flasher{Image: im, Progress: func(e Event) {
		if e.Phase != PhaseWrite {
			return
		}
		mu.Lock()
		if e.Done == e.Total {
			writeDone = true
		}
		mu.Unlock()
		if e.Done < e.Total {
			time.Sleep(20 * time.Millisecond) // a slow card: room for the read-back
		}
	}}
	fl.beforeReadBack = func(_ Card, r Range) error {
		mu.Lock()
		defer mu.Unlock()
		if writeDone {
			readAfter++
		} else {
			readEarly = append(readEarly, r.String())
		}
		return nil
	}
	res := fl.Flash(context.Background(), Card{Name: "pi", Target: dev})
	if !res.OK || res.Verified != im.Map.MappedBytes() {
		t.Fatalf("%+v", res)
	}
	if len(readEarly) == 0 {
		t.Fatalf("no range was read back before the write ended (%d after)", readAfter)
	}
	t.Logf("read back during the write: %d ranges; after it: %d", len(readEarly), readAfter)
}

// TestReadBackOrder: the read-back queues the ranges wholly past the first
// MiB first, in the order they are written, then the ones reaching into the
// first MiB, which is written last; every chunk exactly once.
func TestReadBackOrder(t *testing.T) {
	im := openTestImage(t, makeImage(t, t.TempDir()))
	m := im.Map
	order := newReadBack(m).order()
	all := writeChunks(m, 0)
	if len(order) != len(all) {
		t.Fatalf("%d chunks queued, want %d", len(order), len(all))
	}
	seen := map[int64]bool{}
	inHead, last := false, int64(-1)
	for _, ch := range order {
		if seen[ch.off] {
			t.Fatalf("chunk at %d queued twice", ch.off)
		}
		seen[ch.off] = true
		head := m.Ranges[ch.rng].Offset(m.BlockSize) < holdback
		switch {
		case head:
			inHead = true
		case inHead:
			t.Fatalf("chunk at %d (past the first MiB) queued after a first-MiB range", ch.off)
		case ch.off < last:
			t.Fatalf("chunk at %d queued after the one at %d", ch.off, last)
		default:
			last = ch.off
		}
	}
	if !inHead {
		t.Fatal("the test image has no range in the first MiB")
	}
}
