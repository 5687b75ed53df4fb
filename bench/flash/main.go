// Command flash benchmarks `provision flash` against bmaptool and dd.
//
// In one run it builds a 4 GiB Pi-shaped image holding 1.2 GiB of data
// (MBR, FAT32 boot, ext4 root filled with incompressible files, holes
// elsewhere) and its bmap (`bmaptool create`), then writes it to two kinds
// of target, a regular file and a loop device, with each contender:
//
//   - provision flash (the image checked against its bmap first, then only
//     mapped blocks, O_DIRECT, every range read back bypassing the page
//     cache and hashed while the later ones are written, then a seed
//     written and read back);
//   - provision flash again, the image now stamped as checked (what every
//     card after the first batch costs): the check is not repeated;
//   - bmaptool copy (only mapped blocks, sha256 of the image data as read);
//   - dd bs=4M conv=fsync (every byte).
//
// The page cache is dropped (echo 3 > /proc/sys/vm/drop_caches) before
// every contender so each starts cold, and each gets a fresh target. Goal
// (issue 11): provision no slower than bmaptool, at least 2.5x faster than
// dd. Needs root.
//
//	go run ./bench/flash [-dir /var/tmp] [-keep]
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/fhlab/provision/internal/rpi/flash"
	"github.com/fhlab/provision/internal/rpi/image"
)

const (
	imageSize = 4 << 30
	dataBytes = 1150 << 20 // files; with the filesystems' metadata 1.2 GiB is mapped
	bootStart = 4 << 20
	bootSize  = 256 << 20
	rootStart = bootStart + bootSize
)

func main() {
	dir := flag.String("dir", "/var/tmp", "where the image and targets go (a disk, not tmpfs)")
	keep := flag.Bool("keep", false, "keep the work directory")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *dir, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench/flash:", err)
		os.Exit(1)
	}
}

func sh(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func run(ctx context.Context, base string, keep bool) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (loop devices, drop_caches)")
	}
	for _, tool := range []string{"bmaptool", "dd", "losetup", "sfdisk", "mkfs.vfat", "mke2fs", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("needs %s (scripts/install-deps.sh)", tool)
		}
	}
	work, err := os.MkdirTemp(base, "flash-bench-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(work)
	}
	fmt.Printf("work directory %s\n", work)

	t0 := time.Now()
	img, err := buildImage(ctx, work)
	if err != nil {
		return err
	}
	im, err := flash.OpenImage(ctx, img, "", false)
	if err != nil {
		return err
	}
	fmt.Printf("image: %s, %s mapped in %d ranges (built in %s)\n", image.HumanBytes(im.Size), image.HumanBytes(im.Map.MappedBytes()), len(im.Map.Ranges), time.Since(t0).Round(time.Second))

	bin := filepath.Join(work, "provision")
	if err := sh(ctx, "go", "build", "-o", bin, "./cmd/provision"); err != nil {
		return err
	}
	seeds := filepath.Join(work, "seeds")
	if _, err := image.WriteSeedDir(filepath.Join(seeds, "bench-01"), image.SeedManifest{Node: "bench-01", Partition: 1}, map[string][]byte{
		"user-data":      []byte("#cloud-config\nhostname: bench-01\n"),
		"meta-data":      []byte("instance-id: bench-01\n"),
		"network-config": []byte("version: 2\n"),
	}); err != nil {
		return err
	}

	type contender struct {
		name string
		cmd  func(target string, loop bool) []string
	}
	// provision stamps an image it has checked against its map (in
	// $XDG_CACHE_HOME, here in the work directory): the first run reads the
	// image twice (check, then write), a run on an image checked before
	// (every card after the first batch) once.
	stamps := filepath.Join(work, "cache")
	os.Setenv("XDG_CACHE_HOME", stamps)
	provision := func(target string, loop bool) []string {
		args := []string{bin, "flash", "--image", img, "--node", "bench-01", "--seeds", seeds, "-o", "json"}
		if loop {
			return append(args, "--device", target, "--yes", "--allow-non-removable")
		}
		return append(args, "--to-file", filepath.Dir(target))
	}
	contenders := []contender{
		{"provision flash", func(target string, loop bool) []string {
			os.RemoveAll(stamps) // the image not checked before
			return provision(target, loop)
		}},
		{"provision, checked", provision},
		{"bmaptool copy", func(target string, _ bool) []string { return []string{"bmaptool", "-q", "copy", img, target} }},
		{"dd bs=4M conv=fsync", func(target string, _ bool) []string {
			return []string{"dd", "if=" + img, "of=" + target, "bs=4M", "conv=fsync", "status=none"}
		}},
	}
	times := map[string]time.Duration{}
	for _, kind := range []string{"file", "loop device"} {
		for _, c := range contenders {
			d, err := measure(ctx, work, kind == "loop device", c.cmd)
			if err != nil {
				return fmt.Errorf("%s to a %s: %w", c.name, kind, err)
			}
			times[kind+"/"+c.name] = d
			fmt.Printf("  %-12s %-20s %6.1f s  %7.1f MB/s of image data\n", kind, c.name, d.Seconds(), float64(im.Map.MappedBytes())/d.Seconds()/1e6)
		}
	}
	fmt.Println()
	fmt.Println("Every contender started cold: caches dropped before each (echo 3 > /proc/sys/vm/drop_caches), fresh sparse target.")
	fmt.Println("The loop device's backing file is on the same disk, so all three write through the host page cache below it;")
	fmt.Println("provision's O_DIRECT read-back bypasses the loop device's cache, not the backing file's.")
	for _, kind := range []string{"file", "loop device"} {
		b := times[kind+"/bmaptool copy"]
		d := times[kind+"/dd bs=4M conv=fsync"]
		for _, c := range []struct{ key, what string }{{"provision flash", "first flash of the image"}, {"provision, checked", "image checked before"}} {
			p := times[kind+"/"+c.key]
			fmt.Printf("%-12s provision (%s) %.1f s: bmaptool/provision %.2fx (goal >= 1), dd/provision %.2fx (goal >= 2.5)\n", kind+":", c.what, p.Seconds(), b.Seconds()/p.Seconds(), d.Seconds()/p.Seconds())
		}
	}
	return nil
}

// measure runs one contender against a fresh target, starting cold.
func measure(ctx context.Context, work string, loop bool, cmd func(string, bool) []string) (time.Duration, error) {
	out := filepath.Join(work, "out")
	os.RemoveAll(out)
	os.MkdirAll(out, 0o755)
	target := filepath.Join(out, "bench-01.img")
	if loop {
		backing := filepath.Join(work, "card.img")
		os.Remove(backing)
		f, err := os.Create(backing)
		if err != nil {
			return 0, err
		}
		f.Truncate(imageSize + 64<<20)
		f.Close()
		o, err := exec.CommandContext(ctx, "losetup", "-f", "--show", backing).Output()
		if err != nil {
			return 0, fmt.Errorf("losetup: %w", err)
		}
		target = strings.TrimSpace(string(o))
		defer func() {
			exec.Command("losetup", "-d", target).Run()
			os.Remove(backing)
		}()
	}
	exec.Command("sync").Run()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200); err != nil {
		return 0, fmt.Errorf("drop caches: %w", err)
	}
	args := cmd(target, loop)
	start := time.Now()
	o, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	d := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("%s: %v\n%s", strings.Join(args, " "), err, o)
	}
	return d, nil
}

// buildImage makes work/golden.img: MBR, FAT32 boot, ext4 root holding
// dataBytes of incompressible files; and its bmap.
func buildImage(ctx context.Context, work string) (string, error) {
	img := filepath.Join(work, "golden.img")
	f, err := os.Create(img)
	if err != nil {
		return "", err
	}
	if err := f.Truncate(imageSize); err != nil {
		return "", err
	}
	f.Close()
	cmd := exec.CommandContext(ctx, "sfdisk", "--quiet", img)
	cmd.Stdin = strings.NewReader(fmt.Sprintf("label: dos\nstart=%d, size=%d, type=c\nstart=%d, type=83\n", bootStart/512, bootSize/512, rootStart/512))
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("sfdisk: %v\n%s", err, out)
	}
	if err := sh(ctx, "mkfs.vfat", "-F", "32", "-n", "bootfs", "--offset", fmt.Sprint(bootStart/512), img, fmt.Sprint(bootSize/1024)); err != nil {
		return "", err
	}
	root := filepath.Join(work, "rootfs")
	rng := rand.NewChaCha8([32]byte{1})
	buf := make([]byte, 1<<20)
	var written int64
	for i := 0; written < dataBytes; i++ {
		d := filepath.Join(root, fmt.Sprintf("usr/lib/pkg%02d", i/40))
		os.MkdirAll(d, 0o755)
		size := int64(1<<20 + (i%7)*(1<<20) + i*4096%65536)
		size = min(size, dataBytes-written)
		w, err := os.Create(filepath.Join(d, fmt.Sprintf("file%04d.bin", i)))
		if err != nil {
			return "", err
		}
		for n := size; n > 0; {
			c := min(n, int64(len(buf)))
			rng.Read(buf[:c])
			w.Write(buf[:c])
			n -= c
		}
		w.Close()
		written += size
	}
	if err := sh(ctx, "mke2fs", "-q", "-F", "-t", "ext4", "-d", root, "-E", fmt.Sprintf("offset=%d", rootStart), img, fmt.Sprintf("%dk", (imageSize-rootStart)/1024)); err != nil {
		return "", err
	}
	os.RemoveAll(root)
	if err := sh(ctx, "bmaptool", "create", "-o", img+".bmap", img); err != nil {
		return "", err
	}
	return img, nil
}
