// Package hostlab boots an emulated "bring your own" host for tests and
// benchmarks: a Debian root file system of its own (made by mmdebstrap,
// cached as a tar), booted with its own systemd by systemd-nspawn in its
// own network namespace, whose only link is a veth on the lab bridge. sshd
// runs inside; nothing else provision installs is there.
//
// What differs from a real host, and why:
//   - the kernel is this machine's: sysctls outside the network namespace
//     (fs.*, kernel.*, and net.ipv4.neigh.default.*) are read-only inside,
//     so provision reports them instead of setting them;
//   - on a cgroup v1 machine nspawn mounts the controllers read-only in the
//     container; a unit of the emulated root (provision-hostlab-cgroups)
//     bind-remounts them read-write before docker starts, as they are on a
//     real host. The container's cgroups are <prefix>-<name> in every
//     hierarchy, so dockerd's cgroups stay below them;
//   - nspawn's seccomp filter refuses the kernel keyring calls runc needs
//     for each container's session keyring; the host lab allows add_key,
//     keyctl and request_key (--system-call-filter);
//   - chrony cannot set the clock without CAP_SYS_TIME: systemd skips it
//     (ConditionCapability) and provision counts it as enabled;
//   - /etc/localtime and resolv.conf are left to the root (--timezone=off,
//     --resolv-conf=off), as on a real host.
package hostlab

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// DefaultRootTar is where scripts/install-deps.sh leaves the cached root.
const DefaultRootTar = "/var/cache/provision/hostlab-bookworm-amd64.tar"

// RootTar is the cached root: $PROVISION_HOSTLAB_ROOT or DefaultRootTar.
func RootTar() string {
	if p := os.Getenv("PROVISION_HOSTLAB_ROOT"); p != "" {
		return p
	}
	return DefaultRootTar
}

// Host is one booted emulated host.
type Host struct {
	Name, IP string
	Root     string // its root file system
	cgroups  []string
	cmd      *exec.Cmd
	done     chan error
}

// Config says which host to boot where.
type Config struct {
	Prefix  string // the lab's prefix: cgroups are <prefix>-<name>
	Name    string
	IP      string // with the lab's prefix length: 198.18.7.21/24
	Bridge  string // the lab bridge
	RootTar string
	Dir     string // where the root is unpacked
	// Bootstrap is a script run in the root before boot (chroot), such as
	// `provision hosts bootstrap` prints.
	Bootstrap string
	Console   string // file for the container's console output
}

// Missing names a tool the host lab needs that is not here, or "".
func Missing() string {
	for _, tool := range []string{"systemd-nspawn", "tar", "ssh-keygen", "chroot"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " (apt-get install systemd-container openssh-client)"
		}
	}
	if _, err := os.Stat(RootTar()); err != nil {
		return "the emulated host's root " + RootTar() + " (scripts/install-deps.sh makes it with mmdebstrap)"
	}
	return ""
}

// Boot unpacks the root, gives it fresh SSH host keys, its hostname and
// address, runs the bootstrap script in it and boots it. The caller must
// call Stop (also on failure).
func Boot(ctx context.Context, c Config) (*Host, error) {
	ip, _, _ := strings.Cut(c.IP, "/")
	h := &Host{Name: c.Name, IP: ip, Root: filepath.Join(c.Dir, "root")}
	if err := os.MkdirAll(h.Root, 0o755); err != nil {
		return h, err
	}
	steps := [][]string{
		{"tar", "-C", h.Root, "-xf", c.RootTar},
		{"sh", "-c", "rm -f " + h.Root + "/etc/ssh/ssh_host_*"},
		{"ssh-keygen", "-q", "-A", "-f", h.Root},
	}
	for _, s := range steps {
		if out, err := exec.CommandContext(ctx, s[0], s[1:]...).CombinedOutput(); err != nil {
			return h, fmt.Errorf("prepare the root of %s: %s: %w: %s", c.Name, strings.Join(s, " "), err, out)
		}
	}
	files := map[string]string{
		"etc/hostname": c.Name + "\n",
		// Before 80-container-host0.network, which would ask DHCP.
		"etc/systemd/network/10-lab.network":                   "[Match]\nName=host0\n\n[Network]\nAddress=" + c.IP + "\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n",
		"etc/systemd/system/provision-hostlab-cgroups.service": cgroupUnit,
	}
	for p, content := range files {
		full := filepath.Join(h.Root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return h, err
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			return h, err
		}
	}
	wants := filepath.Join(h.Root, "etc/systemd/system/multi-user.target.wants")
	os.MkdirAll(wants, 0o755)
	for link, target := range map[string]string{
		"systemd-networkd.service":          "/lib/systemd/system/systemd-networkd.service",
		"provision-hostlab-cgroups.service": "/etc/systemd/system/provision-hostlab-cgroups.service",
	} {
		if err := os.Symlink(target, filepath.Join(wants, link)); err != nil && !errors.Is(err, fs.ErrExist) {
			return h, err
		}
	}
	if c.Bootstrap != "" {
		cmd := exec.CommandContext(ctx, "chroot", h.Root, "sh")
		cmd.Stdin = strings.NewReader(c.Bootstrap)
		if out, err := cmd.CombinedOutput(); err != nil {
			return h, fmt.Errorf("bootstrap %s: %w: %s", c.Name, err, out)
		}
	}
	// The container's cgroups, in every hierarchy, named for the lab so
	// that its Down finds them too.
	cg := c.Prefix + "-" + c.Name
	hier, _ := filepath.Glob("/sys/fs/cgroup/*/cgroup.procs")
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.procs"); err == nil {
		hier = append(hier, "/sys/fs/cgroup/cgroup.procs")
	}
	var enter []string
	for _, procs := range hier {
		d := filepath.Join(filepath.Dir(procs), cg)
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			continue
		}
		h.cgroups = append(h.cgroups, d)
		enter = append(enter, "echo $$ > "+d+"/cgroup.procs")
	}
	console, err := os.Create(c.Console)
	if err != nil {
		return h, err
	}
	defer console.Close()
	script := strings.Join(append(enter, `exec systemd-nspawn -b --register=no --keep-unit --network-bridge="$1" --timezone=off --resolv-conf=off --system-call-filter="add_key keyctl request_key" -M "$2" -D "$3"`), "\n")
	h.cmd = exec.Command("sh", "-c", script, "sh", c.Bridge, c.Name, h.Root)
	h.cmd.Stdout, h.cmd.Stderr = console, console
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := h.cmd.Start(); err != nil {
		return h, fmt.Errorf("boot %s: %w", c.Name, err)
	}
	h.done = make(chan error, 1)
	go func() { h.done <- h.cmd.Wait() }()
	return h, h.waitSSH(ctx, 3*time.Minute)
}

const cgroupUnit = `[Unit]
Description=provision host lab: cgroup v1 controllers read-write, as on a real host
DefaultDependencies=no
Before=docker.service containerd.service
ConditionPathIsReadWrite=!/sys/fs/cgroup/memory

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'for d in /sys/fs/cgroup/*/; do case "$d" in */systemd/|*/unified/) continue;; esac; mount --bind "$d" "$d" && mount -o remount,bind,rw "$d"; done'

[Install]
WantedBy=multi-user.target
`

// waitSSH waits until the host's sshd answers on port 22.
func (h *Host) waitSSH(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		conn, err := (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp", net.JoinHostPort(h.IP, "22"))
		if err == nil {
			buf := make([]byte, 4)
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = conn.Read(buf)
			conn.Close()
			if err == nil && string(buf) == "SSH-" {
				return nil
			}
		}
		select {
		case err := <-h.done:
			return fmt.Errorf("%s: systemd-nspawn ended before sshd answered: %v", h.Name, err)
		case <-ctx.Done():
			return fmt.Errorf("%s: sshd on %s:22 did not answer within %s", h.Name, h.IP, limit)
		case <-time.After(time.Second):
		}
	}
}

// Stop kills the container (every process in its cgroups), removes its
// cgroups and its root. nspawn removes its veth when it ends.
func (h *Host) Stop() error {
	var errs []error
	if h.cmd != nil && h.cmd.Process != nil {
		_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
	}
	for i := 0; i < 50; i++ {
		alive := 0
		for _, d := range h.cgroups {
			alive += killAll(d)
		}
		if alive == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if h.done != nil {
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			errs = append(errs, fmt.Errorf("%s: systemd-nspawn did not end", h.Name))
		}
	}
	for _, d := range h.cgroups {
		if err := removeTree(d); err != nil {
			errs = append(errs, err)
		}
	}
	if h.Root != "" {
		if err := os.RemoveAll(h.Root); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// killAll SIGKILLs every process in a cgroup tree and says how many there were.
func killAll(dir string) int {
	n := 0
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		data, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		for _, f := range strings.Fields(string(data)) {
			var pid int
			fmt.Sscan(f, &pid)
			if pid > 0 {
				syscall.Kill(pid, syscall.SIGKILL)
				n++
			}
		}
		return nil
	})
	return n
}

func removeTree(dir string) error {
	var dirs []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	var errs []error
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := syscall.Rmdir(dirs[i]); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dirs[i], err))
		}
	}
	return errors.Join(errs...)
}
