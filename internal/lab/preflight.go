package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// tools are the absolute paths of the programs the lab runs.
type tools struct {
	ip, nsenter, dockerd, sshd, iptables          string
	useradd, userdel, usermod, groupadd, groupdel string
}

// requirement is a program the lab needs and the Debian package with it.
type requirement struct {
	name, pkg string
	dst       func(*tools) *string
}

var requirements = []requirement{
	{"ip", "iproute2", func(t *tools) *string { return &t.ip }},
	{"nsenter", "util-linux", func(t *tools) *string { return &t.nsenter }},
	{"dockerd", "docker.io", func(t *tools) *string { return &t.dockerd }},
	{"containerd", "docker.io", nil},
	{"runc", "docker.io", nil},
	{"iptables", "iptables", func(t *tools) *string { return &t.iptables }},
	{"sshd", "openssh-server", func(t *tools) *string { return &t.sshd }},
	{"useradd", "passwd", func(t *tools) *string { return &t.useradd }},
	{"userdel", "passwd", func(t *tools) *string { return &t.userdel }},
	{"usermod", "passwd", func(t *tools) *string { return &t.usermod }},
	{"groupadd", "passwd", func(t *tools) *string { return &t.groupadd }},
	{"groupdel", "passwd", func(t *tools) *string { return &t.groupdel }},
}

// ErrNotRoot is returned by Preflight when the process is not root.
var ErrNotRoot = errors.New("lab up needs root: it creates network namespaces, a bridge, users and daemons (run it with sudo)")

// MissingError lists the programs the lab needs and did not find.
type MissingError struct {
	Missing []string // program names
	Pkgs    []string // Debian packages that provide them
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("the emulated lab needs %s: install %s (apt-get install -y %s)",
		strings.Join(e.Missing, ", "), strings.Join(e.Pkgs, ", "), strings.Join(e.Pkgs, " "))
}

// Preflight checks that the lab can run here: root, and every program it
// starts (ip, nsenter, dockerd, containerd, runc, iptables, sshd, the
// shadow tools). The error names what is missing and which Debian package
// provides it.
func Preflight() error {
	_, err := findTools()
	return err
}

func findTools() (tools, error) {
	var t tools
	if os.Geteuid() != 0 {
		return t, ErrNotRoot
	}
	var miss MissingError
	seen := map[string]bool{}
	for _, r := range requirements {
		p, err := lookPath(r.name)
		if err != nil {
			miss.Missing = append(miss.Missing, r.name)
			if !seen[r.pkg] {
				seen[r.pkg] = true
				miss.Pkgs = append(miss.Pkgs, r.pkg)
			}
			continue
		}
		if r.dst != nil {
			*r.dst(&t) = p
		}
	}
	if len(miss.Missing) > 0 {
		return t, &miss
	}
	return t, nil
}

// lookPath finds a program in PATH or the sbin directories, which are not
// always in a non-login root's PATH.
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}
