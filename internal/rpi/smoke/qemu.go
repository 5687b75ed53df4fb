package smoke

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// Machine is the emulated board: qemu's generic arm64 "virt" machine with
// a Cortex-A72 (the Pi 4's core), no network device and the console on
// the first serial port.
type Machine struct {
	QEMU   string // qemu-system-aarch64
	CPUs   int
	Memory int // MiB
	Image  string
	Root   RootFS
	Boot   BootFiles
	Seed   string // the CIDATA seed disk
	// TmpDir receives qemu's snapshot overlay (its $TMPDIR).
	TmpDir string
	// RootDrive, when set, is the -drive of the root disk instead of Image
	// with snapshot=on (e.g. a Pi's NBD export: file=nbd://...).
	RootDrive string
}

// Args is qemu's command line. The golden image is attached with
// snapshot=on: the guest's writes go to a temporary overlay, the image is
// never changed. -nic none: the guest has no network device at all.
func (m Machine) Args() []string {
	root := "file=" + m.Image + ",format=raw,if=virtio,snapshot=on"
	if m.RootDrive != "" {
		root = m.RootDrive
	}
	return []string{
		"-M", "virt", "-cpu", "cortex-a72",
		"-smp", fmt.Sprint(m.CPUs), "-m", fmt.Sprint(m.Memory),
		"-nic", "none",
		"-display", "none", "-monitor", "none", "-serial", "stdio",
		"-no-reboot",
		"-kernel", m.Boot.Kernel, "-initrd", m.Boot.Initrd,
		// The guest has no network device, so systemd-networkd-wait-online
		// would only hold the boot for two minutes and then fail.
		"-append", "root=" + m.Root.Device() + " rw rootwait console=ttyAMA0 panic=-1 systemd.mask=systemd-networkd-wait-online.service",
		"-drive", root,
		"-drive", "file=" + m.Seed + ",format=raw,if=virtio,readonly=on",
	}
}

// smokeLine matches a check script line anywhere in a console line (other
// output may precede it on the same line).
var smokeLine = regexp.MustCompile(`SMOKE ([A-Za-z0-9_.-]+)=(.*)$`)

// ansi matches terminal escape sequences systemd puts on the console.
var ansi = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// Console collects what the guest prints.
type Console struct {
	Values map[string]string
	Done   bool   // the script printed SMOKE done=1
	Panic  string // a kernel panic line, if any
	Lines  int
}

// Parse reads console output until EOF, copying it to log when set.
func Parse(r io.Reader, log io.Writer, onLine func(string)) (*Console, error) {
	c := &Console{Values: map[string]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimRight(ansi.ReplaceAllString(sc.Text(), ""), "\r")
		c.Lines++
		if log != nil {
			fmt.Fprintln(log, line)
		}
		if onLine != nil {
			onLine(line)
		}
		if m := smokeLine.FindStringSubmatch(line); m != nil {
			v := strings.TrimSpace(m[2])
			c.Values[m[1]] = v
			if m[1] == "done" {
				c.Done = true
			}
		}
		if strings.Contains(line, "Kernel panic") && c.Panic == "" {
			c.Panic = line
		}
	}
	return c, sc.Err()
}

// Boot runs the machine until the guest powers off, ctx ends or the
// console shows a kernel panic (panic=-1 then resets, and -no-reboot ends
// qemu). The console goes to log.
func Boot(ctx context.Context, m Machine, log io.Writer, onLine func(string)) (*Console, error) {
	cmd := exec.CommandContext(ctx, m.QEMU, m.Args()...)
	cmd.Stdin = nil
	if m.TmpDir != "" {
		cmd.Env = append(os.Environ(), "TMPDIR="+m.TmpDir)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", m.QEMU, err)
	}
	c, perr := Parse(stdout, log, onLine)
	werr := cmd.Wait()
	switch {
	case ctx.Err() != nil:
		return c, fmt.Errorf("qemu: %w (after %d console lines)", ctx.Err(), c.Lines)
	case werr != nil:
		var ee *exec.ExitError
		if errors.As(werr, &ee) {
			return c, fmt.Errorf("qemu: %w: %s", werr, strings.TrimSpace(stderr.String()))
		}
		return c, fmt.Errorf("qemu: %w", werr)
	case perr != nil && !errors.Is(perr, os.ErrClosed):
		return c, fmt.Errorf("qemu console: %w", perr)
	}
	return c, nil
}
