package lab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"

	"github.com/fhlab/provision/internal/par"
)

// Down removes everything the lab made: its daemons and everything they
// started (containers, shims, SSH sessions), their mounts, the
// namespaces, veths and bridge, cgroups, the firewall rule, the group, the
// SSH user if a lab created it and no other lab uses it, the state and
// data directories, and the host paths labs made once the last lab is
// gone. It reads the manifest
// and also looks for leftovers by the lab's prefix, so it works after a
// crash or a partial Up. A lab that is not up is no error.
//
// Each node's dockerd first gets SIGTERM and StopTimeout to shut down
// while its containers are killed; whatever is left then gets SIGKILL.
func (l *Lab) Down(ctx context.Context) error {
	if l.toolErr != nil {
		return l.toolErr
	}
	start := time.Now()
	if exists(l.cfg.StateDir) {
		unlock, err := l.lock(ctx)
		if err != nil {
			return err
		}
		defer unlock()
	}
	m, err := loadManifest(l.manifestPath())
	if err != nil {
		l.log.Warn("lab down: manifest unreadable; removing what carries the lab's prefix", "err", err)
		m = nil
	}
	nodes := l.knownNodes(m)

	cgs, _ := labCgroups(l.cfg.Prefix)
	lbDirs := make([][]string, len(nodes))
	// Stopping is mostly waiting: every node at once.
	_ = par.Each(ctx, len(nodes), len(nodes), func(ctx context.Context, i int) error {
		lbDirs[i] = loadBalancerDirs(ctx, nodes[i])
		l.stopNode(ctx, nodes[i], cgs, l.cfg.StopTimeout)
		return nil
	})
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("lab down: %w", err)
	}

	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(l.killLeftovers(ctx, nodes))
	for _, dirs := range lbDirs {
		for _, d := range dirs {
			add(os.RemoveAll(d))
		}
	}
	add(l.removeNetwork(ctx, nodes))
	if cgs, err := labCgroups(l.cfg.Prefix); err == nil {
		waitGone(ctx, killCgroups(cgs), 5*time.Second)
		add(removeCgroups(cgs))
	}

	others := l.otherManifests()
	userName, created := l.cfg.SSHUser, false
	if m != nil {
		userName, created = m.SSHUser, m.CreatedUser
	}
	add(l.removeUser(ctx, userName, created, others))
	add(l.removeGroup(ctx))
	add(l.removeDirs(ctx))
	base := filepath.Dir(l.cfg.StateDir)
	if len(others) == 0 && exists(base) {
		add(restoreNeighbourLimits(base))
		add(removeHostPaths(base, l.hostPathInUse()))
	}
	_ = syscall.Rmdir(base) // when no other lab is in it
	if len(errs) == 0 {
		if left := l.Leftovers(); len(left) > 0 {
			add(fmt.Errorf("left behind: %s", strings.Join(left, "; ")))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("lab down: %w", errors.Join(errs...))
	}
	if m != nil || len(nodes) > 0 {
		l.log.Debug("lab down", "nodes", len(nodes), "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// knownNodes are the manifest's nodes plus any namespace or node directory
// carrying the prefix that the manifest does not name (a crash between
// making and recording cannot happen, but a lost manifest can).
func (l *Lab) knownNodes(m *Manifest) []Node {
	var nodes []Node
	seen := map[string]bool{}
	if m != nil {
		for _, n := range m.Nodes {
			nodes = append(nodes, n)
			seen[n.Name] = true
		}
	}
	var names []string
	for _, ns := range namedNetns(l.cfg.Prefix) {
		names = append(names, strings.TrimPrefix(ns, l.cfg.Prefix+"-"))
	}
	for _, dir := range []string{filepath.Join(l.cfg.StateDir, "nodes"), l.cfg.DataDir} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			names = append(names, e.Name())
		}
	}
	for _, name := range names {
		if !seen[name] {
			seen[name] = true
			n := l.newNode(NodeSpec{Name: name}, nil)
			n.Veth = "" // unknown; links are found by prefix
			nodes = append(nodes, n)
		}
	}
	return nodes
}

// loadBalancerDirs asks a node's dockerd, if it runs, for its overlay
// networks: a swarm load balancer keeps files in
// /var/lib/docker/network/files/lb_<network id> whatever --data-root says,
// and they are the lab's to remove.
func loadBalancerDirs(ctx context.Context, n Node) []string {
	if _, ok := pidFromFile(filepath.Join(n.Dir, "dockerd.pid"), n.Dir+"/"); !ok {
		return nil
	}
	c, err := NewEngine(n.DockerSocket)
	if err != nil {
		return nil
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	nets, err := c.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("driver", "overlay"))})
	if err != nil {
		return nil
	}
	var dirs []string
	for _, nw := range nets {
		dirs = append(dirs, filepath.Join("/var/lib/docker/network/files", "lb_"+nw.ID))
	}
	return dirs
}

// stopNode asks the node's dockerd and sshd to stop (SIGTERM) and kills
// its containers meanwhile, so dockerd's shutdown does not wait out each
// container's stop timeout; it waits up to timeout.
func (l *Lab) stopNode(ctx context.Context, n Node, cgs []string, timeout time.Duration) {
	var pids []int
	if pid, ok := pidFromFile(filepath.Join(n.Dir, "dockerd.pid"), n.Dir+"/"); ok {
		_ = signal(pid, syscall.SIGTERM)
		pids = append(pids, pid)
	}
	if pid, ok := pidFromFile(filepath.Join(n.Dir, "sshd.pid"), filepath.Join(n.Dir, "sshd_config")); ok {
		_ = signal(pid, syscall.SIGTERM)
		pids = append(pids, pid)
	}
	var mine []string
	for _, d := range cgs {
		if filepath.Base(d) == cgroupName(l.cfg.Prefix, n.Name) {
			mine = append(mine, d)
		}
	}
	deadline := time.Now().Add(timeout)
	for len(pids) > 0 && ctx.Err() == nil && time.Now().Before(deadline) {
		killCgroups(mine)
		pids = waitGone(ctx, pids, 200*time.Millisecond)
	}
	if len(pids) > 0 {
		l.log.Warn("lab down: daemons did not stop in time; killing them", "node", n.Name, "pids", pids)
	}
}

// ownBinaries are the programs whose command line naming the state dir
// marks them as the lab's (a shell or editor looking at it is not).
var ownBinaries = map[string]bool{
	"dockerd": true, "containerd": true, "containerd-shim": true, "containerd-shim-runc-v2": true,
	"runc": true, "sshd": true, "nsenter": true, "docker-proxy": true, "docker-init": true,
}

// killLeftovers SIGKILLs every process that is the lab's: the daemons and
// their helpers by command line, anything in a node's network or UTS
// namespace (SSH sessions, host-network containers) and anything in the
// lab's cgroups. Killed shims leave their sockets behind; those go too.
func (l *Lab) killLeftovers(ctx context.Context, nodes []Node) error {
	return l.kill(ctx, nodes, true)
}

// kill SIGKILLs the processes of nodes: by command line naming their
// directories (the whole lab's state directory when whole), by namespace,
// and in their cgroups (every cgroup of the lab when whole).
func (l *Lab) kill(ctx context.Context, nodes []Node, whole bool) error {
	marks := []string{l.cfg.StateDir + "/"}
	ours := map[string]bool{}
	if !whole {
		marks = marks[:0]
		for _, n := range nodes {
			marks = append(marks, n.Dir+"/")
			ours[cgroupName(l.cfg.Prefix, n.Name)] = true
		}
	}
	named := func(cmdline string) bool {
		for _, m := range marks {
			if strings.Contains(cmdline, m) {
				return true
			}
		}
		return false
	}
	nets, uts := map[string]bool{}, map[string]bool{}
	for _, n := range nodes {
		if id := nsID("net", n.NetnsPath()); id != "" {
			nets[id] = true
		}
		if id := nsID("uts", n.UTS); id != "" {
			uts[id] = true
		}
	}
	var left []string
	for round := 0; round < 5; round++ {
		procs, err := listProcs()
		if err != nil {
			return fmt.Errorf("list processes: %w", err)
		}
		var victims []int
		var sockets []string
		left = left[:0]
		for _, p := range procs {
			argv0 := filepath.Base(strings.SplitN(p.cmdline, " ", 2)[0])
			if (named(p.cmdline) && ownBinaries[argv0]) || nets[p.net] || uts[p.uts] {
				victims = append(victims, p.pid)
				left = append(left, fmt.Sprintf("%d %s", p.pid, p.cmdline))
				if s := shimSocket(p.cmdline); s != "" {
					sockets = append(sockets, s)
				}
			}
		}
		if cgs, err := labCgroups(l.cfg.Prefix); err == nil {
			for _, d := range cgs {
				if whole || ours[filepath.Base(d)] {
					victims = append(victims, cgroupPids(d)...)
				}
			}
		}
		if len(victims) == 0 {
			return nil
		}
		for _, pid := range victims {
			_ = signal(pid, syscall.SIGKILL)
		}
		waitGone(ctx, victims, 3*time.Second)
		for _, s := range sockets {
			_ = os.Remove(s)
		}
	}
	return fmt.Errorf("processes still running after SIGKILL: %s", strings.Join(left, "; "))
}

// shimSocket is the socket a containerd-shim-runc-v2 with this command
// line listens on: /run/containerd/s/<sha256 of address/namespace/id>.
func shimSocket(cmdline string) string {
	f := strings.Fields(cmdline)
	if len(f) == 0 || !strings.HasPrefix(filepath.Base(f[0]), "containerd-shim") {
		return ""
	}
	args := map[string]string{}
	for i := 1; i+1 < len(f); i++ {
		if strings.HasPrefix(f[i], "-") {
			args[strings.TrimLeft(f[i], "-")] = f[i+1]
		}
	}
	if args["address"] == "" || args["namespace"] == "" || args["id"] == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(filepath.Join(args["address"], args["namespace"], args["id"])))
	return filepath.Join("/run/containerd/s", hex.EncodeToString(sum[:]))
}

// removeNetwork deletes every link carrying the prefix (the veths, which
// takes their peers along, then the bridge; one `ip -batch` for all), the
// nodes' namespaces and the firewall rule.
func (l *Lab) removeNetwork(ctx context.Context, nodes []Node) error {
	var errs []error
	links := prefixedLinks(l.cfg.Prefix)
	sort.SliceStable(links, func(i, j int) bool { return links[j] == l.bridge }) // the bridge last
	if len(links) > 0 {
		var batch strings.Builder
		for _, link := range links {
			fmt.Fprintf(&batch, "link delete %s\n", link)
		}
		// -force: go on past a link that vanished meanwhile; what is left
		// afterwards is the error.
		_, err := runInput(ctx, batch.String(), l.tools.ip, "-force", "-batch", "-")
		for _, link := range links {
			if linkExists(link) {
				errs = append(errs, fmt.Errorf("delete link %s: %v", link, err))
			}
		}
	}
	names := map[string]bool{}
	for _, n := range nodes {
		names[n.Netns] = true
	}
	for _, ns := range namedNetns(l.cfg.Prefix) {
		names[ns] = true
	}
	for ns := range names {
		if err := deleteNetns(ns); err != nil {
			errs = append(errs, err)
		}
	}
	if err := l.removeForward(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeDirs removes the lab's state and data directories (after
// unmounting what is mounted below them), each node's in parallel:
// deleting thousands of small files is slow on some disks.
func (l *Lab) removeDirs(ctx context.Context) error {
	var dirs []string
	for _, base := range []string{filepath.Join(l.cfg.StateDir, "nodes"), l.cfg.DataDir} {
		ents, _ := os.ReadDir(base)
		for _, e := range ents {
			dirs = append(dirs, filepath.Join(base, e.Name()))
		}
	}
	err := par.Each(ctx, 16, len(dirs), func(ctx context.Context, i int) error {
		return removeTree(dirs[i])
	})
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range []string{l.cfg.DataDir, l.cfg.StateDir} {
		if err := removeTree(d); err != nil {
			errs = append(errs, err)
		}
	}
	_ = syscall.Rmdir(filepath.Dir(l.cfg.DataDir)) // when no other lab is in it
	return errors.Join(errs...)
}

// hostPathUsers are the programs that use a host path the lab may have
// made; while one runs (not the lab's: those are gone) the path stays.
var hostPathUsers = map[string][]string{
	netnsDir:               nil,
	"/run/sshd":            {"sshd"},
	"/run/docker":          {"dockerd"},
	"/run/containerd":      {"containerd", "containerd-shim", "containerd-shim-runc-v2"},
	"/etc/docker/key.json": {"dockerd"},
	"/var/lib/docker":      {"dockerd"},
}

// hostPathInUse returns a test for the host paths some running program
// (not the lab's: those are gone) may need.
func (l *Lab) hostPathInUse() func(string) bool {
	procs, _ := listProcs()
	running := map[string]bool{}
	for _, p := range procs {
		argv0 := filepath.Base(strings.SplitN(p.cmdline, " ", 2)[0])
		running[strings.TrimSuffix(argv0, ":")] = true
	}
	return func(path string) bool {
		for _, prog := range hostPathUsers[path] {
			if running[prog] {
				l.log.Debug("lab down: keeping a host path a running program may use", "path", path, "program", prog)
				return true
			}
		}
		return false
	}
}
