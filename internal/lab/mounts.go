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

	"github.com/fhlab/provision/internal/mountinfo"
)

// readMounts lists the mounts of this process's mount namespace (which is
// the one the lab's daemons mount in: they only enter other network and
// UTS namespaces).
func readMounts() ([]mountinfo.Mount, error) { return mountinfo.Read("/proc/self/mountinfo") }

// mountsUnder lists the mount points at or below dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	ms, err := readMounts()
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	dir = filepath.Clean(dir)
	var pts []string
	for _, m := range ms {
		if m.Point == dir || strings.HasPrefix(m.Point, dir+"/") {
			pts = append(pts, m.Point)
		}
	}
	sort.SliceStable(pts, func(i, j int) bool { return len(pts[i]) > len(pts[j]) })
	return pts, nil
}

// unmountUnder detaches every mount at or below dir (docker's overlays,
// netns and data-root bind mounts, the UTS bind mounts), deepest first,
// lazily so a busy mount cannot stop Down. Mounts stacked on one point
// take several rounds.
func unmountUnder(dir string) error {
	for round := 0; round < 10; round++ {
		pts, err := mountsUnder(dir)
		if err != nil || len(pts) == 0 {
			return err
		}
		var errs []error
		for _, p := range pts {
			if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
			}
		}
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
	}
	pts, _ := mountsUnder(dir)
	if len(pts) > 0 {
		return fmt.Errorf("mounts left under %s after unmounting: %s", dir, strings.Join(pts, ", "))
	}
	return nil
}

// isMountPoint reports whether path is a mount point.
func isMountPoint(path string) bool {
	ms, err := readMounts()
	if err != nil {
		return false
	}
	for _, m := range ms {
		if m.Point == path {
			return true
		}
	}
	return false
}

// removeTree removes dir after making sure nothing is mounted below it:
// removing through a mount would delete what is mounted, not ours.
func removeTree(dir string) error {
	if err := unmountUnder(dir); err != nil {
		return err
	}
	if pts, err := mountsUnder(dir); err != nil || len(pts) > 0 {
		return fmt.Errorf("remove %s: still mounted below it: %v %v", dir, pts, err)
	}
	if err := os.RemoveAll(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}
