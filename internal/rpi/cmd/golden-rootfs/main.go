// Command golden-rootfs builds the Debian root filesystem of the Raspberry
// Pi golden image with internal/rpi/rootfs and writes it into an ext4
// filesystem image with mke2fs -d, for `make golden` until the image
// assembly (`provision image build`) replaces it. It prints each step and
// the time and size of the build.
//
//	go run ./internal/rpi/cmd/golden-rootfs -out out/golden [-epoch N] [-keep]
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/fhlab/provision/internal/rpi/rootfs"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "golden-rootfs:", err)
		os.Exit(1)
	}
}

func run() error {
	out := flag.String("out", "out/golden", "output directory: rootfs/ (the tree) and rootfs.ext4")
	suite := flag.String("suite", rootfs.DefaultSuite, "Debian suite")
	mirror := flag.String("mirror", rootfs.DefaultMirror, "Debian mirror")
	epoch := flag.Int64("epoch", 0, "SOURCE_DATE_EPOCH (0: $SOURCE_DATE_EPOCH, else none)")
	size := flag.String("size", "3G", "size of the ext4 image (mke2fs)")
	extra := flag.String("packages", "", "comma-separated packages besides the base set")
	verbose := flag.Bool("v", false, "print mmdebstrap's output")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *epoch == 0 {
		if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
			if _, err := fmt.Sscan(v, epoch); err != nil {
				return fmt.Errorf("SOURCE_DATE_EPOCH=%q: %w", v, err)
			}
		}
	}
	// Progress prints the steps; the log carries mmdebstrap's output with -v.
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	dir := filepath.Join(*out, "rootfs")
	img := filepath.Join(*out, "rootfs.ext4")
	for _, p := range []string{dir, img} {
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	var pkgs []string
	if *extra != "" {
		pkgs = strings.Split(*extra, ",")
	}
	start := time.Now()
	err := rootfs.Build(ctx, rootfs.Options{
		Dir: dir, Suite: *suite, Mirror: *mirror, Packages: pkgs,
		SourceDateEpoch: *epoch, Log: log,
		Progress: func(format string, args ...any) {
			fmt.Printf("%s  %s\n", time.Since(start).Round(time.Second), fmt.Sprintf(format, args...))
		},
	})
	if err != nil {
		return err
	}
	built := time.Since(start)
	du, _ := exec.CommandContext(ctx, "du", "-sx", "--block-size=1M", dir).Output()
	fmt.Printf("rootfs built in %s (%s), %s MB\n", built.Round(time.Second), built, strings.Fields(string(du) + " ?")[0])

	// mke2fs -d copies the tree without mounting. The times are the tree's;
	// the filesystem UUID and hash seed are fixed, and E2FSPROGS_FAKE_TIME
	// pins the superblock's times, so that the image depends on the tree.
	t := time.Now()
	mk := exec.CommandContext(ctx, "mke2fs", "-q", "-F", "-t", "ext4", "-L", "rootfs",
		"-U", "5a7e1a4b-0b1d-4c6e-9c5e-70726f766973", "-E", "hash_seed=5a7e1a4b-0b1d-4c6e-9c5e-70726f766973",
		"-d", dir, img, *size)
	if *epoch > 0 {
		mk.Env = append(os.Environ(), fmt.Sprintf("E2FSPROGS_FAKE_TIME=%d", *epoch))
	}
	if b, err := mk.CombinedOutput(); err != nil {
		return fmt.Errorf("mke2fs -d %s %s: %w: %s", dir, img, err, b)
	}
	fmt.Printf("ext4 image %s written in %s\n", img, time.Since(t).Round(time.Second))
	return outputs(ctx, dir, img, *suite, *epoch)
}

// outputs writes beside img its sha256, its block map (bmaptool) and a
// manifest of the packages in the tree.
func outputs(ctx context.Context, dir, img, suite string, epoch int64) error {
	f, err := os.Open(img)
	if err != nil {
		return err
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		return fmt.Errorf("sha256 %s: %w", img, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if err := os.WriteFile(img+".sha256", []byte(sum+"  "+filepath.Base(img)+"\n"), 0o644); err != nil {
		return err
	}
	if b, err := exec.CommandContext(ctx, "bmaptool", "create", "-o", img+".bmap", img).CombinedOutput(); err != nil {
		return fmt.Errorf("bmaptool create %s: %w: %s", img, err, b)
	}
	pkgs, err := rootfs.InstalledPackages(dir)
	if err != nil {
		return err
	}
	ks, err := rootfs.Kernels(dir)
	if err != nil || len(ks) == 0 {
		return fmt.Errorf("manifest: no kernel in %s (%v)", dir, err)
	}
	m := map[string]any{
		"image": filepath.Base(img), "sha256": sum, "suite": suite, "architecture": rootfs.DefaultArch,
		"kernel": ks[len(ks)-1].Version, "sourceDateEpoch": epoch, "packages": pkgs,
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(strings.TrimSuffix(img, ".ext4")+".manifest.json", append(b, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Printf("sha256 %s, block map %s.bmap, %d packages in the manifest, kernel %s\n", sum, img, len(pkgs), ks[len(ks)-1].Version)
	return nil
}
