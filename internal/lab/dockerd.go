package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/client"
)

// dockerdArgs are a node's dockerd flags. Everything dockerd keeps is in
// the node's directory; the flags that matter for the emulation:
//   - its own --config-file (an empty daemon.json: the host's
//     /etc/docker/daemon.json is not read), --data-root (on disk, in
//     the lab's data dir), --exec-root (containerd, runc state, netns
//     files), --pidfile and socket, so daemons never share state;
//   - --group: the socket is usable by the lab's SSH group;
//   - --iptables stays on, as on the real nodes: published ports,
//     docker_gwbridge masquerading and isolation between networks need
//     it, and its rules live in the node's own network namespace (off,
//     a daemon starts only ~0.2 s faster; the embedded DNS and overlays
//     work either way);
//   - --cgroup-parent "<prefix>-<node>" (relative: nested in the cgroup
//     dockerd runs in) so Down can find and kill every container;
//   - --userland-proxy=false: no docker-proxy process per published port;
//   - --swarm-default-advertise-addr: the node's IP, so a bare `docker
//     swarm init` works;
//   - log rotation, so thousands of smoke containers stay small.
func (l *Lab) dockerdArgs(n Node) []string {
	return []string{
		"--config-file", filepath.Join(n.Dir, "daemon.json"),
		"--data-root", n.DataRoot,
		"--exec-root", filepath.Join(n.Dir, "exec"),
		"--pidfile", filepath.Join(n.Dir, "dockerd.pid"),
		"--host", "unix://" + n.DockerSocket,
		"--group", l.group,
		"--exec-opt", "native.cgroupdriver=cgroupfs",
		"--cgroup-parent", cgroupName(l.cfg.Prefix, n.Name),
		"--userland-proxy=false",
		"--swarm-default-advertise-addr", n.IP.String(),
		"--log-level", "warn",
		"--log-opt", "max-size=1m",
		"--log-opt", "max-file=2",
	}
}

// dockerdEnv is added to each emulated dockerd's environment (and so to
// the containerd it starts). GOMAXPROCS=1: a lab node's share of this
// machine is far less than one core, and with 159 Go daemons each running
// as many scheduler threads as the machine has cores, idle threads
// spinning for work and parallel GC workers kept both cores busy; with one
// the 159-node benchmark formed its swarm where it had lost the Raft
// leader before (see README, Benchmarks). Real nodes use all their cores.
func dockerdEnv() []string { return []string{"GOMAXPROCS=1"} }

// started is a daemon the lab launched: exited delivers its end.
type started struct {
	pid    int
	exited <-chan error
}

// spawn starts a daemon inside the node's network and UTS namespaces with
// `nsenter --net=/run/netns/X --uts=FILE` (not `ip netns exec`, which
// remounts /sys and hides the cgroup mounts dockerd needs). The daemon
// gets its own session so a Ctrl-C at the terminal does not reach it, and
// outlives Up: it is not tied to ctx. Its output goes to logPath.
func (l *Lab) spawn(n Node, logPath string, env []string, argv ...string) (started, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return started{}, err
	}
	defer logf.Close()
	args := append([]string{"--net=" + n.NetnsPath(), "--uts=" + n.UTS, "--"}, argv...)
	cmd := exec.Command(l.tools.nsenter, args...)
	cmd.Dir = "/"
	cmd.Env = append([]string{cmdPath}, env...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return started{}, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // reaps the daemon whenever it ends
	return started{pid: cmd.Process.Pid, exited: exited}, nil
}

// ensureDockerd starts the node's dockerd unless one is running, and
// waits until it answers /_ping.
func (l *Lab) ensureDockerd(ctx context.Context, n Node) error {
	var exited <-chan error
	pid, ok := pidFromFile(filepath.Join(n.Dir, "dockerd.pid"), n.Dir+"/")
	if !ok {
		_ = os.Remove(n.DockerSocket) // a stale socket from a killed daemon
		s, err := l.spawn(n, filepath.Join(n.Dir, "dockerd.log"), dockerdEnv(), append([]string{l.tools.dockerd}, l.dockerdArgs(n)...)...)
		if err != nil {
			return fmt.Errorf("start dockerd: %w", err)
		}
		exited, pid = s.exited, s.pid
		l.log.Debug("started dockerd", "node", n.Name, "pid", s.pid)
	}
	err := waitReady(ctx, l.cfg.ReadyTimeout, exited, filepath.Join(n.Dir, "dockerd.log"), "dockerd", func(ctx context.Context) error {
		return pingDocker(ctx, n.DockerSocket)
	})
	if err == nil && n.Manager {
		// In the real lab the managers are VMs with cores of their own; on
		// one machine running a whole lab, Raft on the managers must not
		// starve behind the other nodes' daemons, or the swarm loses its
		// leader. The daemon runs in a session of its own: its process
		// group holds it, containerd and the shims.
		if perr := syscall.Setpriority(syscall.PRIO_PGRP, pid, managerNice); perr != nil {
			return fmt.Errorf("raise the priority of dockerd (manager): %w", perr)
		}
	}
	return err
}

// managerNice is the nice value of a manager node's daemons.
const managerNice = -10

// waitReady polls check until it succeeds, the daemon exits (exited may
// be nil for one started earlier), ctx ends or timeout passes.
func waitReady(parent context.Context, timeout time.Duration, exited <-chan error, logPath, what string, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		err := check(cctx)
		ccancel()
		if err == nil {
			return nil
		}
		select {
		case werr := <-exited:
			return fmt.Errorf("%s exited (%v); its log %s ends:\n%s", what, werr, logPath, logTail(logPath, 10))
		case <-ctx.Done():
			if perr := parent.Err(); perr != nil {
				return perr
			}
			return fmt.Errorf("%s not ready after %s (last check: %v); its log is %s", what, timeout, err, logPath)
		case <-tick.C:
		}
	}
}

// logTail returns the last n lines of a log file.
func logTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "  (" + err.Error() + ")"
	}
	if len(data) == 0 {
		return "  (empty)"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// NewEngine returns an Engine API client for a node's socket. The API
// version is negotiated, so a Debian 12 dockerd (20.10, API 1.41) works.
func NewEngine(socket string) (*client.Client, error) {
	return client.NewClientWithOpts(client.WithHost("unix://"+socket), client.WithAPIVersionNegotiation())
}

// pingDocker asks the Engine API on socket for GET /_ping.
func pingDocker(ctx context.Context, socket string) error {
	c, err := NewEngine(socket)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Ping(ctx)
	return err
}
