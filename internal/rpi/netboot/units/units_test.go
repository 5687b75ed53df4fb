package units

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhlab/provision/internal/testtool"
)

func config(t *testing.T) Config {
	bin, err := os.Executable() // an executable that exists, for systemd-analyze
	if err != nil {
		t.Fatal(err)
	}
	return Config{
		Binary: bin, Inventory: "/etc/provision/lab.yaml", Image: "/var/lib/provision/golden.img",
		StateDir: "/var/lib/provision/fh-lab", Host: "192.168.10.5", BasePort: 10809,
		Nodes: []string{"pi-r1-01", "pi-r1-02"},
	}
}

func TestWrite(t *testing.T) {
	root := t.TempDir()
	c := config(t)
	wrote, err := Write(root, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(wrote) != 3+2+2 {
		t.Errorf("wrote %d files: %q", len(wrote), wrote)
	}
	sys := filepath.Join(root, Dir)
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(sys, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	serve := read(Serve)
	if !strings.Contains(serve, "ExecStart="+c.Binary+" netboot serve -i /etc/provision/lab.yaml --image /var/lib/provision/golden.img --state-dir /var/lib/provision/fh-lab --nbd-host 192.168.10.5 --nbd-port 10809 --roots=false\n") {
		t.Errorf("%s:\n%s", Serve, serve)
	}
	tmpl := read(RootTmpl)
	for _, want := range []string{" netboot roots -i /etc/provision/lab.yaml ", " --nbd-port 10809 %i\n", "Restart=always", "ReadWritePaths=/var/lib/provision/fh-lab", "WantedBy=" + RootTarget} {
		if !strings.Contains(tmpl, want) {
			t.Errorf("%s lacks %q:\n%s", RootTmpl, want, tmpl)
		}
	}
	for _, n := range c.Nodes {
		link := filepath.Join(sys, RootTarget+".wants", Root(n))
		if got, err := os.Readlink(link); err != nil || got != "../"+RootTmpl {
			t.Errorf("%s → %q, %v", link, got, err)
		}
	}
	// A Pi gone from the inventory loses its link; the others stay.
	c.Nodes = c.Nodes[:1]
	if _, err := Write(root, c); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(sys, RootTarget+".wants", Root("pi-r1-02"))); err == nil {
		t.Error("the link of a Pi no longer in the inventory is still there")
	}

	// systemd itself checks them: the service, an instance of the
	// template (through its .wants link) and the target.
	analyze := testtool.Need(t, "systemd-analyze", "systemd")
	out, err := exec.Command(analyze, "verify", "--man=no",
		filepath.Join(sys, Serve), filepath.Join(sys, RootTarget+".wants", Root("pi-r1-01")), filepath.Join(sys, RootTarget)).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func TestFilesRefuse(t *testing.T) {
	for _, c := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.Inventory = "lab.yaml" }, "inventory \"lab.yaml\" must be an absolute path"},
		{func(c *Config) { c.StateDir = "/var/lib/my lab" }, "would need quoted"},
		{func(c *Config) { c.Nodes = nil }, "no netbooted Pi"},
	} {
		cfg := config(t)
		c.edit(&cfg)
		if _, _, err := Files(cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("err = %v, want %q", err, c.want)
		}
	}
}
