package lab

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
)

// Leftovers lists what of this lab is still on the machine: network
// namespaces and links named with its prefix, processes whose command line
// names its directories, mounts below them or of its namespaces, its
// cgroups, its group and its directories. After Down it is empty; Down
// checks that and names what it could not remove.
func (l *Lab) Leftovers() []string {
	prefix, dir, data := l.cfg.Prefix+"-", l.cfg.StateDir, l.cfg.DataDir
	var left []string
	if ents, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), prefix) {
				left = append(left, "network namespace "+e.Name())
			}
		}
	}
	if ifs, err := net.Interfaces(); err == nil {
		for _, i := range ifs {
			if strings.HasPrefix(i.Name, prefix) {
				left = append(left, "link "+i.Name)
			}
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 {
			continue
		}
		if bytes.Contains(b, []byte(dir+"/")) || bytes.Contains(b, []byte(data+"/")) {
			left = append(left, fmt.Sprintf("process %s (%s)", filepath.Base(filepath.Dir(p)), strings.Join(strings.Fields(string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))), " ")))
		}
	}
	if ms, err := readMounts(); err == nil {
		for _, m := range ms {
			if within(m.Point, dir) || within(m.Point, data) || strings.HasPrefix(m.Point, "/run/netns/"+prefix) {
				left = append(left, "mount "+m.Point)
			}
		}
	}
	if cgs, err := labCgroups(l.cfg.Prefix); err == nil {
		for _, c := range cgs {
			left = append(left, "cgroup "+c)
		}
	}
	if _, err := user.LookupGroup(l.cfg.Prefix); err == nil {
		left = append(left, "group "+l.cfg.Prefix)
	}
	for _, d := range []string{dir, data} {
		if _, err := os.Lstat(d); err == nil {
			left = append(left, "directory "+d)
		}
	}
	return left
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}
