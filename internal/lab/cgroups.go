package lab

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// The lab's dockerds put their containers in a cgroup named
// "<prefix>-<node>", relative to the cgroup dockerd runs in, in every
// hierarchy. Down finds those cgroups by name, kills what is in them (the
// containers' processes, which no longer share the node's network
// namespace) and removes them.

// maxCgroupDepth bounds the search below each hierarchy's root.
const maxCgroupDepth = 8

// labCgroups lists the cgroup directories, in every mounted hierarchy,
// whose name starts with prefix-.
func labCgroups(prefix string) ([]string, error) {
	ms, err := readMounts()
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	var dirs []string
	for _, m := range ms {
		if m.FSType != "cgroup" && m.FSType != "cgroup2" {
			continue
		}
		root := m.Point
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			if p != root && strings.HasPrefix(d.Name(), prefix+"-") {
				dirs = append(dirs, p)
				return fs.SkipDir
			}
			if strings.Count(strings.TrimPrefix(p, root), "/") >= maxCgroupDepth {
				return fs.SkipDir
			}
			return nil
		})
	}
	return dirs, nil
}

// cgroupPids lists the processes in a cgroup and every cgroup below it.
func cgroupPids(dir string) []int {
	var pids []int
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		data, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			return nil
		}
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}

// killCgroups sends SIGKILL to every process in the given cgroups and
// returns the pids it signalled.
func killCgroups(dirs []string) []int {
	var pids []int
	seen := map[int]bool{}
	for _, d := range dirs {
		for _, pid := range cgroupPids(d) {
			if !seen[pid] {
				seen[pid] = true
				pids = append(pids, pid)
				_ = signal(pid, syscall.SIGKILL)
			}
		}
	}
	return pids
}

// removeCgroups removes the cgroups and everything below them, deepest
// first. A cgroup still holding a process cannot go: that is an error.
func removeCgroups(dirs []string) error {
	var all []string
	for _, d := range dirs {
		_ = filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				all = append(all, p)
			}
			return nil
		})
	}
	sort.SliceStable(all, func(i, j int) bool { return len(all[i]) > len(all[j]) })
	var errs []error
	for _, d := range all {
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}
