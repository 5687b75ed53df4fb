package rootfs

import (
	"fmt"
	"io/fs"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ClampTimes sets every modification time in the tree under dir that is
// later than epoch to epoch, as tar --clamp-mtime does, and every access
// time to the modification time (symbolic links themselves, not their
// targets): files unpacked from packages keep their times, files made
// during the build get the same time in every build, and reading a file
// changes nothing a later copy (mke2fs -d) records. Change times cannot be
// set; they stay the build's.
func ClampTimes(dir string, epoch int64) (clamped int, err error) {
	// Collect first, then set: reading a directory after its times were
	// set would move its access time again.
	var paths []string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("clamp times: %w", err)
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, p := range paths {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return clamped, fmt.Errorf("clamp times: %w", err)
		}
		m := st.Mtim
		if m.Sec > epoch || (m.Sec == epoch && m.Nsec > 0) {
			m = unix.Timespec{Sec: epoch}
			clamped++
		}
		if st.Atim == m && st.Mtim == m {
			continue
		}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{m, m}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return clamped, fmt.Errorf("clamp times of %s: %w", p, err)
		}
	}
	return clamped, nil
}
