// Package units writes the systemd units that run netboot on a server:
// provision-netboot.service runs provision netboot serve (TFTP,
// proxy-DHCP, status) at boot; provision-netboot-root@.service has one
// instance per netbooted Pi running provision netboot roots NODE, which
// checks the golden image and serves that Pi's root (its qemu-nbd), and
// systemd restarts it; provision-netboot-roots.target wants every Pi's
// instance (the links in provision-netboot-roots.target.wants/, as
// systemctl enable makes them). So one Pi's root is stopped, reset and
// started on its own:
//
//	systemctl stop provision-netboot-root@pi-r1-07
//	provision netboot reset pi-r1-07 -i lab.yaml
//	systemctl start provision-netboot-root@pi-r1-07
package units

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Unit names.
const (
	Serve      = "provision-netboot.service"
	RootTmpl   = "provision-netboot-root@.service"
	RootTarget = "provision-netboot-roots.target"
)

// Root is the unit that serves node's root.
func Root(node string) string { return "provision-netboot-root@" + node + ".service" }

// Config is what the units run.
type Config struct {
	// Binary, Inventory, Image and StateDir are absolute paths.
	Binary, Inventory, Image, StateDir string
	// Bind, Host and BasePort are passed to the roots (--nbd-bind,
	// --nbd-host, --nbd-port); empty or 0 leaves the default.
	Bind, Host string
	BasePort   int
	// Nodes are the netbooted Pis whose roots the target wants.
	Nodes []string
}

// Dir is where the units go under a root directory.
const Dir = "etc/systemd/system"

// Files are the units by path relative to the root directory, and the
// .wants links (path → target).
func Files(c Config) (files, links map[string]string, err error) {
	for name, p := range map[string]string{"binary": c.Binary, "inventory": c.Inventory, "image": c.Image, "state dir": c.StateDir} {
		if !filepath.IsAbs(p) {
			return nil, nil, fmt.Errorf("units: the %s %q must be an absolute path", name, p)
		}
		if strings.ContainsAny(p, " \t\n\"'\\%$") {
			return nil, nil, fmt.Errorf("units: the %s %q has a character a unit file would need quoted (space, quote, %%, $, \\)", name, p)
		}
	}
	if len(c.Nodes) == 0 {
		return nil, nil, errors.New("units: no netbooted Pi")
	}
	common := []string{"-i", c.Inventory, "--image", c.Image, "--state-dir", c.StateDir}
	var nbd []string
	if c.Bind != "" {
		nbd = append(nbd, "--nbd-bind", c.Bind)
	}
	if c.Host != "" {
		nbd = append(nbd, "--nbd-host", c.Host)
	}
	if c.BasePort != 0 {
		nbd = append(nbd, "--nbd-port", strconv.Itoa(c.BasePort))
	}
	hardening := `NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=full
ProtectHome=read-only
ReadWritePaths=` + c.StateDir + "\n"

	files = map[string]string{}
	files[filepath.Join(Dir, Serve)] = `# Written by provision netboot install.
[Unit]
Description=provision netboot: TFTP and proxy-DHCP for the lab's Raspberry Pis
Documentation=man:provision(1)
Wants=network-online.target ` + RootTarget + `
After=network-online.target ` + RootTarget + `

[Service]
Type=exec
ExecStart=` + strings.Join(append([]string{c.Binary, "netboot", "serve"}, append(append(common, nbd...), "--roots=false")...), " ") + `
Restart=always
RestartSec=2
` + hardening + `
[Install]
WantedBy=multi-user.target
`
	files[filepath.Join(Dir, RootTmpl)] = `# Written by provision netboot install.
[Unit]
Description=provision netboot: the root disk of %i over NBD
Documentation=man:provision(1)
PartOf=` + RootTarget + `
After=network-online.target
Wants=network-online.target

[Service]
Type=exec
ExecStart=` + strings.Join(append([]string{c.Binary, "netboot", "roots"}, append(append(common, nbd...), "%i")...), " ") + `
Restart=always
RestartSec=2
# provision stops its qemu-nbd, which flushes the overlay, on SIGTERM.
KillMode=mixed
TimeoutStopSec=30
` + hardening + `
[Install]
WantedBy=` + RootTarget + `
`
	files[filepath.Join(Dir, RootTarget)] = `# Written by provision netboot install.
[Unit]
Description=provision netboot: every netbooted Pi's root disk

[Install]
WantedBy=multi-user.target
`
	links = map[string]string{
		filepath.Join(Dir, "multi-user.target.wants", Serve):      "../" + Serve,
		filepath.Join(Dir, "multi-user.target.wants", RootTarget): "../" + RootTarget,
	}
	for _, n := range c.Nodes {
		links[filepath.Join(Dir, RootTarget+".wants", Root(n))] = "../" + RootTmpl
	}
	return files, links, nil
}

// Write writes the units and links under root (/ on the server; a
// directory in tests and image builds). Links of Pis no longer in the
// inventory are removed. It returns the paths written, sorted.
func Write(root string, c Config) ([]string, error) {
	files, links, err := Files(c)
	if err != nil {
		return nil, err
	}
	var wrote []string
	for rel, content := range files {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return nil, err
		}
		wrote = append(wrote, p)
	}
	wants := filepath.Join(root, Dir, RootTarget+".wants")
	old, _ := filepath.Glob(filepath.Join(wants, "provision-netboot-root@*.service"))
	for _, p := range old {
		if _, ok := links[filepath.Join(Dir, RootTarget+".wants", filepath.Base(p))]; !ok {
			os.Remove(p)
		}
	}
	for rel, target := range links {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		os.Remove(p)
		if err := os.Symlink(target, p); err != nil {
			return nil, err
		}
		wrote = append(wrote, p)
	}
	slices.Sort(wrote)
	return wrote, nil
}
