// Command image benchmarks the Raspberry Pi golden image builds (issue 10).
//
// In one run it prints, each with its anchor and the ratio:
//
//	(a) per-node identity for the 144 Pis of inventory/example.yaml: writing
//	    every Pi's seed (provision image seed) against one sparse copy of the
//	    image per Pi (cp --sparse=always, what a per-host burn costs: sdm's
//	    --burnfile, pi-gen per host);
//	(b) a cold build of an image definition against a warm (cached) build
//	    of the same definition.
//
// The definition is -image (a name in images/rpi or a path). The default,
// and the fallback when the Debian builder is not available, is a synthetic
// Raspberry Pi OS Trixie base image made here with mkfs.vfat and mke2fs (no
// real image can be downloaded here); the output says which one ran.
//
//	(c) with -compare IMAGE: the cold build against an earlier cold build of
//	    the same inputs (same input hash), byte for byte (image.Diff names
//	    what differs, if anything).
//
// SOURCE_DATE_EPOCH sets the builds' time stamp, as for provision.
//
//	go run ./bench/image                      # synthetic base definition
//	go run ./bench/image -image debian-pi4    # the Debian build (minutes, root, network to the mirror)
//	SOURCE_DATE_EPOCH=1764460800 go run ./bench/image -image debian-pi4 \
//	    -compare out/golden/images/debian-pi4/debian-pi4.img   # and is it reproducible?
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fhlab/provision/images"
	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/render"
	"github.com/fhlab/provision/internal/rpi/image"
	"github.com/fhlab/provision/internal/rpi/image/imagetest"
	"github.com/fhlab/provision/templates"
)

const exampleInventory = "inventory/example.yaml"

func main() {
	name := flag.String("image", "", "image definition to build: a name in images/rpi or a path (default: a synthetic Raspberry Pi OS Trixie base)")
	keep := flag.Bool("keep", false, "keep the scratch directory")
	compare := flag.String("compare", "", "an earlier build of the same definition and inputs to compare the cold build with, byte for byte")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var epoch int64
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		var err error
		if epoch, err = strconv.ParseInt(s, 10, 64); err != nil || epoch <= 0 {
			fmt.Fprintf(os.Stderr, "bench/image: SOURCE_DATE_EPOCH=%q: want seconds since 1970\n", s)
			os.Exit(2)
		}
	}
	if err := run(ctx, *name, *keep, epoch, *compare); err != nil {
		fmt.Fprintln(os.Stderr, "bench/image:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, name string, keep bool, epoch int64, compare string) error {
	dir, err := os.MkdirTemp("", "provision-bench-image-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Println("scratch directory:", dir)
	}
	defer func() {
		if !keep {
			os.RemoveAll(dir)
		}
	}()
	inv, err := inventory.Load(exampleInventory)
	if err != nil {
		return fmt.Errorf("%w (run from the repository root)", err)
	}
	r, err := render.New(templates.FS)
	if err != nil {
		return err
	}
	defs, err := fs.Sub(images.FS, "rpi")
	if err != nil {
		return err
	}
	began := time.Now()
	newBuilder := func(state string) *image.Builder {
		return &image.Builder{Inv: inv, Renderer: r, Defs: defs, Dir: filepath.Join(state, "images"), Epoch: epoch,
			Progress: func(format string, args ...any) {
				fmt.Fprintf(os.Stderr, "  [%s] "+format+"\n", append([]any{time.Since(began).Round(time.Second)}, args...)...)
			}}
	}

	what := ""
	if name == "" {
		what = "a synthetic Raspberry Pi OS Trixie base (default)"
	} else {
		what = name
	}
	useSynthetic := name == ""
	state := filepath.Join(dir, "state")
	var cold time.Duration
	var res *image.Result
	if !useSynthetic {
		inv.Lab.Pis.Image = name
		start := time.Now()
		res, err = newBuilder(state).Build(ctx, name)
		cold = time.Since(start)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			fmt.Printf("bench/image: %s could not be built here (%v);\n  falling back to a synthetic Raspberry Pi OS Trixie base.\n", name, err)
			useSynthetic = true
			what = "a synthetic Raspberry Pi OS Trixie base (fallback: " + name + " unavailable)"
			os.RemoveAll(state)
		}
	}
	if useSynthetic {
		defPath, err := syntheticDefinition(dir)
		if err != nil {
			return err
		}
		name = defPath
		inv.Lab.Pis.Image = defPath
		start := time.Now()
		res, err = newBuilder(state).Build(ctx, name)
		cold = time.Since(start)
		if err != nil {
			return err
		}
	}
	start := time.Now()
	warmRes, err := newBuilder(state).Build(ctx, name)
	warm := time.Since(start)
	if err != nil {
		return err
	}
	if !warmRes.Cached {
		return fmt.Errorf("the second build of %s was not served from the cache", name)
	}

	fmt.Printf("bench/image: %s, %d Pis of %s, %d cores\n", what, countPis(inv), exampleInventory, numCPU())
	fmt.Printf("  image %s: %s, %s mapped, %d packages, flavour %s\n", filepath.Base(res.Image), human(res.M.ImageSize), human(res.M.MappedBlocks*4096), len(res.M.Packages), res.M.Layout.Flavour)
	fmt.Printf("(b) cold build %s   warm (cached) build %s   ratio %.0fx   goal: warm < 5 s, cold < 12 min\n",
		cold.Round(10*time.Millisecond), warm.Round(time.Millisecond), cold.Seconds()/warm.Seconds())

	if compare != "" {
		same, err := reproducible(ctx, res, compare)
		if err != nil {
			return err
		}
		if !same && !keep {
			keep = true // for image diff
			fmt.Println("    the scratch directory is kept:", dir)
		}
	}

	// (a) seeds for every Pi.
	seeds := filepath.Join(dir, "seeds")
	start = time.Now()
	sum, err := image.WriteSeeds(ctx, newBuilder(state), "", seeds)
	seedTime := time.Since(start)
	if err != nil {
		return err
	}
	seedBytes, err := du(seeds)
	if err != nil {
		return err
	}

	// Anchor: one sparse copy of the image per Pi. With a big image the copies
	// would not fit on this disk: each copy is removed after it is made, so
	// only one exists at a time; the space is what the copies would take.
	copies := filepath.Join(dir, "copies")
	if err := os.Mkdir(copies, 0o755); err != nil {
		return err
	}
	var copyBytes int64
	start = time.Now()
	for i := range sum.Nodes {
		if err := ctx.Err(); err != nil {
			return err
		}
		dst := filepath.Join(copies, fmt.Sprintf("pi-%03d.img", i))
		if out, err := exec.CommandContext(ctx, "cp", "--sparse=always", res.Image, dst).CombinedOutput(); err != nil {
			return fmt.Errorf("cp: %v: %s", err, out)
		}
		n, err := du(dst)
		if err != nil {
			return err
		}
		copyBytes += n
		os.Remove(dst)
	}
	cpTime := time.Since(start)
	fmt.Printf("(a) per-node identity for %d Pis: seeds %s (%s on disk)   vs   cp --sparse=always x%d %s (%s on disk)   ratio %.0fx time, %.0fx space   goal: seeds < 1 s\n",
		sum.Nodes, seedTime.Round(time.Millisecond), human(seedBytes), sum.Nodes, cpTime.Round(10*time.Millisecond), human(copyBytes),
		cpTime.Seconds()/seedTime.Seconds(), float64(copyBytes)/float64(max(seedBytes, 1)))
	return nil
}

// reproducible compares the cold build with an earlier build of the same
// inputs, byte for byte, and says what differs if anything does.
func reproducible(ctx context.Context, res *image.Result, earlier string) (bool, error) {
	data, err := os.ReadFile(earlier + ".manifest.json")
	if err != nil {
		return false, fmt.Errorf("-compare: %w", err)
	}
	var m image.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return false, fmt.Errorf("-compare: %s.manifest.json: %w", earlier, err)
	}
	if m.InputHash != res.M.InputHash {
		return false, fmt.Errorf("-compare: %s was built from other inputs (input hash %.16s, this build %.16s): set SOURCE_DATE_EPOCH=%d as it was", earlier, m.InputHash, res.M.InputHash, m.Epoch)
	}
	d, err := image.Diff(ctx, earlier, res.Image)
	if err != nil {
		return false, err
	}
	if d.Identical() {
		fmt.Printf("(c) reproducible: the cold build is byte-identical to %s (sha256 %.16s, same input hash %.16s)\n", earlier, res.M.SHA256, m.InputHash)
		return true, nil
	}
	fmt.Printf("(c) NOT reproducible: the cold build differs from %s (same input hash %.16s) in %d blocks of 4 KiB:\n", earlier, m.InputHash, d.Blocks)
	for _, ar := range d.Areas {
		fmt.Printf("    %s: %d blocks; %d files' data, %d inodes, metadata %v\n", ar.Name, ar.Blocks, len(ar.Files), len(ar.Inodes), ar.Meta)
	}
	fmt.Printf("    details: provision image diff %s %s\n", earlier, res.Image)
	return false, nil
}

// syntheticDefinition makes a Raspberry Pi OS Trixie-shaped base image and a
// definition for it (the real images/rpi boot lines and overlays).
func syntheticDefinition(dir string) (string, error) {
	base, err := imagetest.MakeBase(dir, imagetest.Flavours()["raspios-trixie"])
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(base)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	files := map[string]string{
		"synthetic-trixie.yaml": fmt.Sprintf("apiVersion: provision/v1\nkind: PiImage\nname: synthetic-trixie\ndescription: synthetic Raspberry Pi OS Trixie base (bench/image)\nbase:\n  path: base.img\n  sha256: %q\nboot:\n  config: boot/config-base.txt\noverlays: [overlays/common]\n", hex.EncodeToString(sum[:])),
	}
	for _, p := range []string{"boot/config-base.txt", "overlays/common/etc/cloud/cloud.cfg.d/99-provision-datasource.cfg", "overlays/common/etc/ssh/sshd_config.d/50-provision.conf"} {
		b, err := fs.ReadFile(images.FS, "rpi/"+p)
		if err != nil {
			return "", err
		}
		files[p] = string(b)
	}
	if err := imagetest.WriteTree(dir, files); err != nil {
		return "", err
	}
	return filepath.Join(dir, "synthetic-trixie.yaml"), nil
}

func countPis(inv *inventory.Inventory) int {
	n := 0
	for _, node := range inv.Nodes {
		if node.Kind == inventory.KindPi {
			n++
		}
	}
	return n
}

// du is the space files under p take on disk.
func du(p string) (int64, error) {
	var n int64
	err := filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(q, &st); err != nil {
			return err
		}
		n += st.Blocks * 512
		return nil
	})
	return n, err
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
}

func numCPU() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "processor\t:")
}
