// Package smoke boots a Raspberry Pi golden image under qemu's arm64 "virt"
// machine (TCG, no network device) with one node's NoCloud seed and checks
// over the serial console that the node came up as provision means it to:
// hostname, the host tuning's sysctls and link file in effect, the IPVS
// timer and its plain report, docker answering, zram swap on.
//
// The image's own kernel and initramfs are copied out of its root
// filesystem with debugfs (no mount); the image is attached read-only
// (qemu snapshot), the seed as a second disk labelled CIDATA. A check
// script installed by the seed prints "SMOKE key=value" lines and powers
// the guest off; Run compares them with what the inventory asks for.
package smoke

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/fhlab/provision/internal/render"
)

// Config is one smoke boot.
type Config struct {
	// Image is the golden image: a disk with an MBR and an ext4 root
	// partition, or a bare ext4 root filesystem.
	Image string
	// Data is the node whose seed the guest gets; Seed is its rendered
	// seed (render.Renderer.Render of Data).
	Data *render.Data
	Seed render.Files
	// WorkDir holds the kernel, initramfs and seed disk; Run removes what
	// it puts there.
	WorkDir string
	// Timeout bounds the boot (TCG on two shared cores: minutes).
	Timeout time.Duration
	// RootDrive, when set, replaces the image as the guest's root disk
	// (a qemu -drive; Image still gives the kernel and initramfs).
	RootDrive string
	// QEMU is the qemu-system-aarch64 binary (default from PATH).
	QEMU         string
	CPUs, Memory int
	// Console receives the guest's console output; OnLine sees each line.
	Console io.Writer
	OnLine  func(string)
	// Progress is told about each step.
	Progress func(format string, args ...any)
}

// Outcome is what a smoke boot found.
type Outcome struct {
	Results  []Result
	Passed   bool
	Console  *Console
	Duration time.Duration
}

// Tools are the programs a smoke boot runs.
var Tools = []string{"qemu-system-aarch64", "debugfs", "mkfs.vfat", "mcopy"}

// Run boots cfg.Image and checks it.
func Run(ctx context.Context, cfg Config) (*Outcome, error) {
	progress := cfg.Progress
	if progress == nil {
		progress = func(string, ...any) {}
	}
	if cfg.QEMU == "" {
		cfg.QEMU = "qemu-system-aarch64"
	}
	for _, t := range append([]string{cfg.QEMU}, Tools[1:]...) {
		if _, err := exec.LookPath(t); err != nil {
			return nil, fmt.Errorf("smoke boot: %s is not installed (Debian packages qemu-system-arm, e2fsprogs, dosfstools, mtools)", t)
		}
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 2
	}
	if cfg.Memory == 0 {
		cfg.Memory = 2048
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 15 * time.Minute
	}
	work, err := os.MkdirTemp(cfg.WorkDir, "provision-smoke-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	root, err := FindRootFS(cfg.Image)
	if err != nil {
		return nil, fmt.Errorf("smoke boot: %w", err)
	}
	boot, err := ExtractBoot(ctx, cfg.Image, root, work)
	if err != nil {
		return nil, fmt.Errorf("smoke boot: %w", err)
	}
	progress("kernel %s from %s (root %s)", boot.Version, cfg.Image, root.Device())

	seed := cfg.Seed
	ud, err := SmokeUserData(seed.UserData, Script(cfg.Data))
	if err != nil {
		return nil, fmt.Errorf("smoke boot: %s: %w", cfg.Data.Node.Name, err)
	}
	seed.UserData = ud
	seedDisk := filepath.Join(work, "seed", "cidata.img")
	if err := os.MkdirAll(filepath.Dir(seedDisk), 0o700); err != nil {
		return nil, err
	}
	if err := SeedDisk(ctx, seedDisk, seed); err != nil {
		return nil, fmt.Errorf("smoke boot: %w", err)
	}

	m := Machine{QEMU: cfg.QEMU, CPUs: cfg.CPUs, Memory: cfg.Memory, Image: cfg.Image, Root: root, Boot: boot, Seed: seedDisk, TmpDir: work, RootDrive: cfg.RootDrive}
	progress("booting %s as %s: qemu-system-aarch64 -M virt -cpu cortex-a72 -smp %d -m %d -nic none (timeout %s)",
		cfg.Image, cfg.Data.Node.Name, cfg.CPUs, cfg.Memory, cfg.Timeout)
	bctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	start := time.Now()
	con, err := Boot(bctx, m, cfg.Console, cfg.OnLine)
	out := &Outcome{Console: con, Duration: time.Since(start)}
	if con != nil {
		out.Results, out.Passed = Evaluate(Checks(cfg.Data), con.Values)
	}
	switch {
	case con != nil && con.Panic != "":
		return out, fmt.Errorf("smoke boot of %s: the guest kernel panicked: %s", cfg.Image, con.Panic)
	case errors.Is(bctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
		return out, fmt.Errorf("smoke boot of %s: no power-off within %s (the check script %s)", cfg.Image, cfg.Timeout, doneState(con))
	case err != nil:
		return out, fmt.Errorf("smoke boot of %s: %w", cfg.Image, err)
	case !con.Done:
		return out, fmt.Errorf("smoke boot of %s: the guest stopped before the check script finished", cfg.Image)
	case !out.Passed:
		return out, fmt.Errorf("smoke boot of %s: checks failed", cfg.Image)
	}
	return out, nil
}

func doneState(c *Console) string {
	switch {
	case c == nil || len(c.Values) == 0:
		return "never started"
	case !c.Done:
		return "started but did not finish"
	}
	return "finished"
}
