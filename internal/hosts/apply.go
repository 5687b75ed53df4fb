package hosts

import (
	"context"
	"encoding/base64"
	"fmt"
	"path"
	"strings"

	"github.com/fhlab/provision/internal/remote"
)

// Result is what Apply changed on one host.
type Result struct {
	Host    string
	Changed []Item // what was changed, in order
	Reboot  bool   // the host was rebooted
}

// Apply makes the plan's changes on the host, in the order a first boot
// makes them: conflicting settings (only with --force, already in the plan),
// files (the apt source first), packages, group, reloads, services, and a
// reboot last when the plan says so. A refused plan or one without items
// changes nothing.
func Apply(ctx context.Context, r remote.Runner, p *Plan) (*Result, error) {
	res := &Result{Host: p.Host}
	if p.Refused != "" || len(p.Items) == 0 {
		return res, nil
	}
	run := func(what, cmd string) error {
		if !p.facts.Root {
			cmd = "sudo -n sh -c " + shellQuote(cmd)
		}
		if _, _, err := r.Run(ctx, cmd); err != nil {
			return fmt.Errorf("%s on %s: %w", what, p.Host, err)
		}
		return nil
	}
	done := func(i Item) { res.Changed = append(res.Changed, i) }
	byKind := map[string][]Item{}
	for _, i := range p.Items {
		byKind[i.Kind] = append(byKind[i.Kind], i)
	}

	// Conflicting sysctl files: the line is kept, commented out.
	for _, c := range p.Conflicts {
		if c.file == "" {
			continue
		}
		cmd := fmt.Sprintf("sed -i '%ds/^/# provision --force: /' %s", c.line, shellQuote(c.file))
		if err := run("comment out "+c.Where, cmd); err != nil {
			return res, err
		}
	}
	written := map[string]bool{}
	for _, i := range byKind["file"] {
		f := p.want.file(i.Name)
		if err := run("write "+f.Path, writeFileCmd(f)); err != nil {
			return res, err
		}
		written[f.Path] = true
		done(i)
	}
	for _, i := range byKind["package"] {
		cmd := "export DEBIAN_FRONTEND=noninteractive; "
		if p.want.file(AptSource) != nil {
			// Only the lab's source: an air-gapped host cannot reach the others.
			cmd += "apt-get update -q -o Dir::Etc::SourceList=" + AptSource + " -o Dir::Etc::SourceParts=/nonexistent -o APT::Get::List-Cleanup=0 >/dev/null && "
		} else {
			cmd += "apt-get update -q >/dev/null && "
		}
		cmd += "apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold " + i.Name + " >/dev/null"
		if err := run("install "+i.Name, cmd); err != nil {
			return res, err
		}
		done(i)
	}
	for _, i := range byKind["group"] {
		if err := run("add "+p.node.SSHUser+" to docker", "usermod --append --groups docker "+shellQuote(p.node.SSHUser)); err != nil {
			return res, err
		}
		done(i)
	}
	// Reloads for what was written.
	var units, dockerConf bool
	for f := range written {
		units = units || strings.HasPrefix(f, "/etc/systemd/system/")
		dockerConf = dockerConf || f == DaemonJSON || strings.HasPrefix(f, dockerDropIn)
	}
	if written[LinkFile] {
		// udev reads .link files at its next start; a running udevd is told now.
		if err := run("reload udev", "if [ -S /run/udev/control ]; then udevadm control --reload; fi"); err != nil {
			return res, err
		}
	}
	if units {
		if err := run("reload systemd", "systemctl daemon-reload"); err != nil {
			return res, err
		}
	}
	// Sysctls: the file's values (it wins over the conflicts commented
	// out above), key by key, skipping those read-only here.
	var sets []string
	for _, i := range byKind["sysctl"] {
		sets = append(sets, shellQuote(i.Name+"="+p.want.Sysctls[i.Name]))
	}
	if len(sets) > 0 {
		if err := run("set sysctls", "sysctl -q -w "+strings.Join(sets, " ")); err != nil {
			return res, err
		}
		res.Changed = append(res.Changed, byKind["sysctl"]...)
	}
	if dockerConf && p.facts.Services["docker.service"].Active == "active" {
		if err := run("restart docker", "systemctl restart docker.service"); err != nil {
			return res, err
		}
		done(Item{Kind: "service", Name: "docker.service", Detail: "restart (configuration changed)"})
	}
	for _, i := range byKind["service"] {
		if err := run(i.Detail+" "+i.Name, "systemctl enable --now "+shellQuote(i.Name)+" 2>&1"); err != nil {
			return res, err
		}
		done(i)
	}
	for _, i := range byKind["cmdline"] {
		if err := run("add "+i.Name+" to the kernel command line", cmdlineCmd(i.Name)); err != nil {
			return res, err
		}
		done(i)
	}
	if p.Reboot {
		// The connection drops; the reboot is scheduled so the command returns.
		if err := run("reboot", "systemd-run --on-active=2 --unit=provision-reboot systemctl reboot"); err != nil {
			return res, err
		}
		res.Reboot = true
	}
	return res, nil
}

func (w Want) file(p string) *File {
	for i := range w.Files {
		if w.Files[i].Path == p {
			return &w.Files[i]
		}
	}
	return nil
}

// writeFileCmd replaces a file atomically with the given content and mode.
func writeFileCmd(f *File) string {
	tmp := f.Path + ".provision-tmp"
	return fmt.Sprintf("umask 022 && mkdir -p %s && printf %%s %s | base64 -d > %s && chmod %o %s && mv -f %s %s",
		shellQuote(path.Dir(f.Path)), shellQuote(base64.StdEncoding.EncodeToString(f.Content)),
		shellQuote(tmp), f.Mode.Perm(), shellQuote(tmp), shellQuote(tmp), shellQuote(f.Path))
}

// cmdlineCmd adds a parameter to the kernel command line the boot loader
// passes: the Raspberry Pi's cmdline.txt, or GRUB's default.
func cmdlineCmd(param string) string {
	q := shellQuote(param)
	return `set -e
for f in /boot/firmware/cmdline.txt /boot/cmdline.txt; do
  if [ -f "$f" ]; then grep -qw -- ` + q + ` "$f" || sed -i "1s/\$/ "` + q + `"/" "$f"; exit 0; fi
done
if [ -f /etc/default/grub ]; then
  grep -q -- ` + q + ` /etc/default/grub || sed -i 's/^GRUB_CMDLINE_LINUX="/&'` + q + `' /' /etc/default/grub
  update-grub; exit 0
fi
echo "no cmdline.txt and no /etc/default/grub: add ` + param + ` to the kernel command line by hand" >&2; exit 1`
}
