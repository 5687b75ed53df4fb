package rootfs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Build fills o.Dir with an arm64 (o.Arch) root filesystem: mmdebstrap
// installs BasePackages and o.Packages from o.Mirror, with initramfs
// generation held back during the emulated install and then run once with
// the short module list. It checks the result (kernel, initramfs, the Pi
// firmware, every listed module known to the kernel) and, with
// o.SourceDateEpoch set, clamps the tree's times to it.
//
// It needs root (mmdebstrap's root mode: device nodes, chroot, owners) and
// mmdebstrap, and arch-test plus qemu-user-static for a foreign o.Arch.
func Build(ctx context.Context, o Options) error {
	o = withDefaults(o, fileExists)
	if err := check(&o); err != nil {
		return err
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Steps go to Progress when it is set (and to the log at debug level),
	// else to the log at info level.
	progress := func(format string, args ...any) {
		if o.Progress != nil {
			o.Progress(format, args...)
			log.Debug(fmt.Sprintf(format, args...))
			return
		}
		log.Info(fmt.Sprintf(format, args...))
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("rootfs %s: needs root (mmdebstrap's root mode: chroot, device nodes, file owners); run it with sudo", o.Dir)
	}
	if err := emptyDir(o.Dir); err != nil {
		return fmt.Errorf("rootfs %s: %w", o.Dir, err)
	}
	mmdebstrap, err := exec.LookPath("mmdebstrap")
	if err != nil {
		return fmt.Errorf("rootfs %s: mmdebstrap is not installed (Debian package mmdebstrap)", o.Dir)
	}
	if err := EnsureEmulation(ctx, o.Arch, progress); err != nil {
		return fmt.Errorf("rootfs %s: %w", o.Dir, err)
	}

	hookDir, err := os.MkdirTemp("", "provision-rootfs-hooks-")
	if err != nil {
		return fmt.Errorf("rootfs %s: %w", o.Dir, err)
	}
	defer os.RemoveAll(hookDir)
	mods := modules(&o)
	if err := writeHooks(hookDir, hookFiles(&o, mods)); err != nil {
		return fmt.Errorf("rootfs %s: %w", o.Dir, err)
	}

	args := Args(o, hookDir)
	progress("mmdebstrap %s %s (%s) from %s: %d packages", o.Suite, o.Arch, strings.Join(o.Components, ","), o.Mirror, len(packages(&o)))
	start := time.Now()
	cmd := exec.CommandContext(ctx, mmdebstrap, args...)
	dpkgLog := filepath.Join(hookDir, "dpkg.log")
	cmd.Env = append(Env(os.Environ(), o), "PROVISION_DPKG_LOG="+dpkgLog)
	// mmdebstrap mounts /proc, /sys and /dev in the tree and unmounts them
	// when it ends: stop it with SIGTERM, which it handles, and its helpers
	// (apt, dpkg, tar) with it; kill them only if they do not end.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 60 * time.Second
	tail, err := run(cmd, log, progress)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("rootfs %s: mmdebstrap: %w", o.Dir, ctx.Err())
		}
		return fmt.Errorf("rootfs %s: mmdebstrap: %w; last output:\n%s", o.Dir, err, tail)
	}
	progress("mmdebstrap done in %s", time.Since(start).Round(time.Second))
	if f, err := os.Open(dpkgLog); err == nil {
		times, total, err := DpkgTimes(f)
		f.Close()
		if err == nil && len(times) > 0 {
			progress("%s", SlowestLine(times, total, 8))
			for _, t := range times[:min(40, len(times))] {
				log.Debug("dpkg time", "package", t.Package, "took", t.Took)
			}
		}
	}

	if err := Verify(o.Dir, mods); err != nil {
		return fmt.Errorf("rootfs %s: %w", o.Dir, err)
	}
	if o.SourceDateEpoch > 0 {
		n, err := ClampTimes(o.Dir, o.SourceDateEpoch)
		if err != nil {
			return fmt.Errorf("rootfs %s: %w", o.Dir, err)
		}
		progress("clamped %d file times to SOURCE_DATE_EPOCH %d", n, o.SourceDateEpoch)
	}
	return nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// emptyDir creates dir or accepts it when it is an empty directory.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return os.MkdirAll(dir, 0o755)
	case err != nil:
		return err
	case len(entries) > 0:
		return fmt.Errorf("directory is not empty (%d entries, e.g. %s); give a new or empty one", len(entries), entries[0].Name())
	}
	return nil
}

func writeHooks(dir string, hooks map[string]string) error {
	for _, name := range hookNames(hooks) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(hooks[name]), 0o755); err != nil {
			return fmt.Errorf("write hook: %w", err)
		}
	}
	return nil
}

// tailLines is how much of mmdebstrap's output an error carries.
const tailLines = 40

// run runs cmd, logging each output line at debug level and passing
// mmdebstrap's own step lines ("I: ...") to progress. It returns the last
// lines of output for an error message.
func run(cmd *exec.Cmd, log *slog.Logger, progress func(string, ...any)) (string, error) {
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	var (
		mu   sync.Mutex
		tail []string
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			line := sc.Text()
			log.Debug(line, "cmd", "mmdebstrap")
			if strings.HasPrefix(line, "I: ") {
				progress("%s", strings.TrimPrefix(line, "I: "))
			}
			mu.Lock()
			tail = append(tail, line)
			if len(tail) > tailLines {
				tail = tail[1:]
			}
			mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	err := cmd.Run()
	pw.Close()
	<-done
	mu.Lock()
	defer mu.Unlock()
	return strings.Join(tail, "\n"), err
}
