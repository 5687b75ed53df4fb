package lab

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// hostPaths are paths outside the state directory that the lab's tools
// create when missing: `ip netns` its directory (a bind mount), sshd its
// privilege-separation directory, every dockerd its plugin directory,
// trust key and (for swarm load balancers) network files in the default
// data root, containerd-shim its socket directory.
var hostPaths = []string{
	netnsDir,
	"/run/sshd",
	"/run/docker",
	"/run/containerd",
	"/etc/docker/key.json",
	"/var/lib/docker",
}

// hostPathsFile, in the base directory shared by all labs, lists the host
// paths that did not exist before a lab ran. It is shared (not in a lab's
// manifest) so that a lab whose manifest was lost still counts. The last
// lab to go down removes those paths and the file.
const hostPathsFile = "host-paths"

// recordHostPaths adds the host paths missing now to the shared record.
func recordHostPaths(baseDir string) error {
	return withHostPaths(baseDir, func(paths map[string]bool) (bool, error) {
		changed := false
		for _, p := range hostPaths {
			if !exists(p) && !paths[p] {
				paths[p] = true
				changed = true
			}
		}
		return changed, nil
	})
}

// withHostPaths runs fn on the shared record under an exclusive lock and
// writes it back when fn reports a change; an empty record is removed.
func withHostPaths(baseDir string, fn func(map[string]bool) (bool, error)) error {
	path := filepath.Join(baseDir, hostPathsFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("record host paths: %w", err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("record host paths: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("record host paths: %w", err)
	}
	paths := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			paths[line] = true
		}
	}
	changed, err := fn(paths)
	if err != nil || !changed {
		if len(paths) == 0 {
			os.Remove(path)
		}
		return err
	}
	if len(paths) == 0 {
		return os.Remove(path)
	}
	var lines []string
	for p := range paths {
		lines = append(lines, p)
	}
	sort.Strings(lines)
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err = f.WriteAt([]byte(strings.Join(lines, "\n")+"\n"), 0)
	return err
}

// removeHostPaths removes the recorded host paths no running program
// needs (see keep): a file outright, a directory only as far as it holds
// nothing but empty directories. /run/netns is unmounted first when
// nothing is left in it. Paths kept stay in the record.
func removeHostPaths(baseDir string, keep func(string) bool) error {
	var errs []error
	err := withHostPaths(baseDir, func(paths map[string]bool) (bool, error) {
		for p := range paths {
			if keep(p) {
				continue
			}
			if err := removeHostPath(p); err != nil {
				errs = append(errs, err)
			}
			if !exists(p) {
				delete(paths, p)
			}
		}
		return true, nil
	})
	return errors.Join(append(errs, err)...)
}

func removeHostPath(p string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return nil
	}
	if !fi.IsDir() {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	if p == "/var/lib/docker" {
		// Swarm load-balancer sandboxes keep their hosts files under the
		// default data root whatever --data-root says.
		lbs, _ := filepath.Glob(filepath.Join(p, "network", "files", "lb_*"))
		for _, lb := range lbs {
			_ = os.RemoveAll(lb)
		}
	}
	if p == netnsDir {
		if ents, _ := os.ReadDir(p); len(ents) == 0 && isMountPoint(p) {
			_ = unix.Unmount(p, unix.MNT_DETACH)
		}
	}
	removeEmptyDirs(p)
	return nil
}

// removeEmptyDirs removes dir and the directories below it that are (or
// become) empty, deepest first. Files are left alone, and so are the
// directories holding them.
func removeEmptyDirs(dir string) {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	sort.SliceStable(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		if !isMountPoint(d) {
			_ = unix.Rmdir(d) // fails, as it should, on a directory with files
		}
	}
}
