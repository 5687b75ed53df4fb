package rootfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"

	"golang.org/x/sys/unix"
)

// binfmtDir is where the kernel's binfmt_misc filesystem is mounted.
const binfmtDir = "/proc/sys/fs/binfmt_misc"

// qemuName maps a Debian architecture to qemu's name for it.
var qemuName = map[string]string{
	"arm64": "aarch64", "armhf": "arm", "armel": "arm", "amd64": "x86_64",
	"i386": "i386", "riscv64": "riscv64", "ppc64el": "ppc64le", "s390x": "s390x",
}

// goArch maps Debian architectures to Go's, to tell the native case.
var goArch = map[string]string{"arm64": "arm64", "amd64": "amd64", "armhf": "arm", "i386": "386", "riscv64": "riscv64", "ppc64el": "ppc64le", "s390x": "s390x"}

// EnsureEmulation makes sure binaries of the Debian architecture arch run
// on this host: natively, or through qemu-user registered with binfmt_misc.
// As root it mounts binfmt_misc and enables the qemu handler when they are
// missing (what a fresh container or VM lacks). arch-test decides.
func EnsureEmulation(ctx context.Context, arch string, logf func(format string, args ...any)) error {
	if goArch[arch] == runtime.GOARCH {
		return nil
	}
	if _, err := exec.LookPath("arch-test"); err != nil {
		return fmt.Errorf("check %s emulation: arch-test is not installed (Debian package arch-test)", arch)
	}
	if archTest(ctx, arch) == nil {
		return nil
	}
	q, ok := qemuName[arch]
	if !ok {
		return fmt.Errorf("check %s emulation: unknown architecture", arch)
	}
	if os.Geteuid() == 0 {
		if _, err := os.Stat(binfmtDir + "/register"); errors.Is(err, os.ErrNotExist) {
			logf("mounting binfmt_misc on %s", binfmtDir)
			if err := unix.Mount("binfmt_misc", binfmtDir, "binfmt_misc", 0, ""); err != nil {
				return fmt.Errorf("check %s emulation: mount binfmt_misc on %s: %w", arch, binfmtDir, err)
			}
		}
		if p, err := exec.LookPath("update-binfmts"); err == nil {
			logf("enabling the qemu-%s binfmt handler", q)
			if out, err := exec.CommandContext(ctx, p, "--enable", "qemu-"+q).CombinedOutput(); err != nil {
				logf("update-binfmts --enable qemu-%s: %v: %s", q, err, bytes.TrimSpace(out))
			}
		} else if p, err := exec.LookPath("systemd-binfmt"); err == nil {
			_ = exec.CommandContext(ctx, p).Run()
		}
		if archTest(ctx, arch) == nil {
			return nil
		}
	}
	return fmt.Errorf("%s binaries do not run on this %s host: install qemu-user-static and binfmt-support, "+
		"then as root: mount -t binfmt_misc binfmt_misc %s; update-binfmts --enable qemu-%s (arch-test %s checks it)",
		arch, runtime.GOARCH, binfmtDir, q, arch)
}

func archTest(ctx context.Context, arch string) error {
	out, err := exec.CommandContext(ctx, "arch-test", arch).CombinedOutput()
	if err != nil {
		return fmt.Errorf("arch-test %s: %w: %s", arch, err, bytes.TrimSpace(out))
	}
	return nil
}
