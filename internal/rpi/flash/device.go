package flash

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/fhlab/provision/internal/mountinfo"
	"github.com/fhlab/provision/internal/rpi/image"
	"golang.org/x/sys/unix"
)

// System is where the kernel's view of disks is read from; tests may point
// it elsewhere, the defaults are the real files.
type System struct {
	Sys       string // /sys
	MountInfo string // /proc/self/mountinfo
	Swaps     string // /proc/swaps
}

// DefaultSystem reads the running kernel's files.
func DefaultSystem() System {
	return System{Sys: "/sys", MountInfo: "/proc/self/mountinfo", Swaps: "/proc/swaps"}
}

// Device is a whole disk as the kernel describes it.
type Device struct {
	Path       string      `json:"path"`
	Name       string      `json:"name"` // sdb, mmcblk0, loop3
	Dev        string      `json:"dev"`  // major:minor
	Size       int64       `json:"size"`
	Model      string      `json:"model,omitempty"`
	Serial     string      `json:"serial,omitempty"`
	Removable  bool        `json:"removable"`
	Loop       bool        `json:"loop,omitempty"`
	Partitions []Partition `json:"partitions,omitempty"`
}

// Partition is one partition of a Device.
type Partition struct {
	Name string `json:"name"`
	Dev  string `json:"dev"`
	Size int64  `json:"size"`
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Inspect describes the block device at path. A partition is refused (the
// whole disk must be named); a regular file or anything else is an error.
func (s System) Inspect(path string) (*Device, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, fmt.Errorf("device %s: %w", path, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFBLK:
	case unix.S_IFREG:
		return nil, fmt.Errorf("device %s is a regular file, not a block device: to write image files pass --to-file DIR", path)
	default:
		return nil, fmt.Errorf("device %s is not a block device", path)
	}
	dev := fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	sysdir, err := filepath.EvalSymlinks(filepath.Join(s.Sys, "dev/block", dev))
	if err != nil {
		return nil, fmt.Errorf("device %s: no sysfs entry for %s: %w", path, dev, err)
	}
	if _, err := os.Stat(filepath.Join(sysdir, "partition")); err == nil {
		parent := filepath.Base(filepath.Dir(sysdir))
		return nil, fmt.Errorf("device %s is partition %s of /dev/%s: name the whole disk", path, filepath.Base(sysdir), parent)
	}
	d := &Device{Path: path, Name: filepath.Base(sysdir), Dev: dev}
	d.Size, _ = strconv.ParseInt(readTrim(filepath.Join(sysdir, "size")), 10, 64)
	d.Size *= 512
	d.Removable = readTrim(filepath.Join(sysdir, "removable")) == "1" ||
		strings.HasPrefix(d.Name, "mmcblk") || strings.Contains(sysdir, "/usb")
	d.Model = strings.TrimSpace(readTrim(filepath.Join(sysdir, "device/vendor")) + " " + readTrim(filepath.Join(sysdir, "device/model")))
	if d.Model == "" {
		d.Model = readTrim(filepath.Join(sysdir, "device/name")) // mmc
	}
	d.Serial = readTrim(filepath.Join(sysdir, "device/serial"))
	if d.Serial == "" {
		d.Serial = readTrim(filepath.Join(sysdir, "serial"))
	}
	if backing := readTrim(filepath.Join(sysdir, "loop/backing_file")); strings.HasPrefix(d.Name, "loop") {
		d.Loop = true
		d.Model = "loop device over " + backing
	}
	entries, _ := os.ReadDir(sysdir)
	for _, e := range entries {
		pdir := filepath.Join(sysdir, e.Name())
		if _, err := os.Stat(filepath.Join(pdir, "partition")); err != nil {
			continue
		}
		size, _ := strconv.ParseInt(readTrim(filepath.Join(pdir, "size")), 10, 64)
		d.Partitions = append(d.Partitions, Partition{Name: e.Name(), Dev: readTrim(filepath.Join(pdir, "dev")), Size: size * 512})
	}
	return d, nil
}

// CheckOptions relax Check.
type CheckOptions struct {
	AllowNonRemovable bool
}

// Check refuses a device that must not be written: the disk holding / or
// any mounted filesystem, a disk with a partition used as swap or held by
// LVM, dm or RAID, a non-removable disk (unless allowed) and one smaller
// than need bytes. The error says which and why.
func (s System) Check(d *Device, need int64, opt CheckOptions) error {
	devs := map[string]string{d.Dev: d.Name}
	for _, p := range d.Partitions {
		devs[p.Dev] = p.Name
	}
	// Disks under the root filesystem, through dm/md/LVM.
	mounts, err := s.mounts()
	if err != nil {
		return err
	}
	for _, m := range mounts {
		if m.Point != "/" {
			continue
		}
		for _, under := range s.underlying(m.Dev) {
			if _, ok := devs[under]; ok {
				return fmt.Errorf("device %s (%s) holds the root filesystem /: refused", d.Path, d.Name)
			}
		}
	}
	for _, m := range mounts {
		for _, under := range s.underlying(m.Dev) {
			if name, ok := devs[under]; ok {
				return fmt.Errorf("device %s: %s is mounted on %s: unmount it first (refused)", d.Path, name, m.Point)
			}
		}
	}
	swaps, err := s.swaps()
	if err != nil {
		return err
	}
	for _, sw := range swaps {
		for _, under := range s.underlying(sw) {
			if name, ok := devs[under]; ok {
				return fmt.Errorf("device %s: %s is in use as swap: swapoff first (refused)", d.Path, name)
			}
		}
	}
	for dev, name := range devs {
		dir := filepath.Join(s.Sys, "dev/block", dev, "holders")
		hs, _ := os.ReadDir(dir)
		if len(hs) > 0 {
			return fmt.Errorf("device %s: %s is held by %s (LVM, device-mapper or RAID member): refused", d.Path, name, holderNames(s, hs))
		}
	}
	if !d.Removable && !opt.AllowNonRemovable {
		kind := "a non-removable disk"
		if d.Loop {
			kind = "a loop device (not removable)"
		}
		return fmt.Errorf("device %s (%s, %s) is %s: refused unless --allow-non-removable", d.Path, d.Name, d.Model, kind)
	}
	if d.Size < need {
		return fmt.Errorf("device %s (%s) holds %s, smaller than the image's %s: refused", d.Path, d.Name, image.HumanBytes(d.Size), image.HumanBytes(need))
	}
	return nil
}

func holderNames(s System, hs []os.DirEntry) string {
	var names []string
	for _, h := range hs {
		n := h.Name()
		if dm := readTrim(filepath.Join(s.Sys, "block", n, "dm/name")); dm != "" {
			n += " (" + dm + ")"
		}
		names = append(names, n)
	}
	return strings.Join(names, ", ")
}

// underlying is dev (major:minor) and every device below it through
// slaves/ (dm, md, loop's none), plus the disk of each partition met.
func (s System) underlying(dev string) []string {
	seen := map[string]bool{}
	var out []string // in walk order: dev itself first, so errors name it
	var walk func(dev string)
	walk = func(dev string) {
		if seen[dev] {
			return
		}
		seen[dev] = true
		out = append(out, dev)
		dir, err := filepath.EvalSymlinks(filepath.Join(s.Sys, "dev/block", dev))
		if err != nil {
			return
		}
		if _, err := os.Stat(filepath.Join(dir, "partition")); err == nil {
			if parent := readTrim(filepath.Join(filepath.Dir(dir), "dev")); parent != "" {
				walk(parent)
			}
		}
		slaves, _ := os.ReadDir(filepath.Join(dir, "slaves"))
		for _, sl := range slaves {
			if d := readTrim(filepath.Join(dir, "slaves", sl.Name(), "dev")); d != "" {
				walk(d)
			}
		}
	}
	walk(dev)
	return out
}

func (s System) mounts() ([]mountinfo.Mount, error) {
	ms, err := mountinfo.Read(s.MountInfo)
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	return ms, nil
}

// swaps are the major:minor of every swap device, and of the filesystem
// holding each swap file.
func (s System) swaps() ([]string, error) {
	data, err := os.ReadFile(s.Swaps)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("read swaps: %w", err)
	}
	var out []string
	for i, line := range strings.Split(string(data), "\n") {
		fs := strings.Fields(line)
		if i == 0 || len(fs) == 0 {
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(mountinfo.Unescape(fs[0]), &st); err != nil {
			continue
		}
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			out = append(out, fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)))
		} else {
			out = append(out, fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev)))
		}
	}
	return out, nil
}
