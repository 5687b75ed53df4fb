package hosts

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/render"
	"github.com/fhlab/provision/templates"
)

// localRunner runs the facts script with this machine's sh: the script is
// real, only SSH is left out.
type localRunner struct{}

func (localRunner) Run(ctx context.Context, cmd string) ([]byte, []byte, error) {
	var out, errb bytes.Buffer
	c := exec.CommandContext(ctx, "sh", "-c", cmd)
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	return out.Bytes(), errb.Bytes(), err
}

// The facts script on this machine reads what the machine says itself.
func TestGatherHere(t *testing.T) {
	if _, err := os.Stat("/etc/debian_version"); err != nil {
		t.Skip("not a Debian machine")
	}
	w := Want{
		Packages: []string{"dpkg", "no-such-package-here"},
		Files:    []File{{Path: "/etc/debian_version"}, {Path: "/etc/no-such-file"}},
		Sysctls:  map[string]string{"net.ipv4.ip_forward": "1", "kernel.pid_max": "1"},
		Services: []string{"no-such-unit.service"},
	}
	f, err := Gather(context.Background(), localRunner{}, w, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	arch, _ := exec.Command("dpkg", "--print-architecture").Output()
	if f.OSID != "debian" || f.Arch != strings.TrimSpace(string(arch)) {
		t.Errorf("os %q arch %q", f.OSID, f.Arch)
	}
	kernel, _ := exec.Command("uname", "-r").Output()
	if f.Kernel != strings.TrimSpace(string(kernel)) {
		t.Errorf("kernel %q, uname says %q", f.Kernel, kernel)
	}
	if !f.Packages["dpkg"] || f.Packages["no-such-package-here"] {
		t.Errorf("packages %v", f.Packages)
	}
	if f.Files["/etc/debian_version"] == "" || f.Files["/etc/no-such-file"] != "" {
		t.Errorf("files %v", f.Files)
	}
	pidMax, _ := os.ReadFile("/proc/sys/kernel/pid_max")
	if f.Sysctls["kernel.pid_max"] != strings.TrimSpace(string(pidMax)) {
		t.Errorf("kernel.pid_max %q, /proc says %q", f.Sysctls["kernel.pid_max"], pidMax)
	}
	if off := f.ClockOffset; off > time.Second || off < -time.Second {
		t.Errorf("clock offset %s against the same clock", off)
	}
}

// A host gets the same tuning files, byte for byte, as a VM's user-data
// writes.
func TestDesiredFilesAreTheVMs(t *testing.T) {
	inv, err := inventory.Load("../../inventory/byo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r, err := render.New(templates.FS)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := r.HostFiles(inv, inventory.KindVM)
	if err != nil {
		t.Fatal(err)
	}
	w, err := Desired(r, inv, &Source{URL: "http://198.18.0.1:8081/", Suite: "provision", Key: []byte("KEY")})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range vm {
		got := w.file(f.Path)
		if got == nil || !bytes.Equal(got.Content, f.Content) || got.Mode != f.Mode {
			t.Errorf("%s: not the VM's file", f.Path)
		}
	}
	if len(w.Files) != len(vm)+2 || w.file(AptSource) == nil || w.file(AptKeyring) == nil {
		t.Errorf("%d files, want the VM's %d and the apt source and key", len(w.Files), len(vm))
	}
	if w.Sysctls["net.ipv4.tcp_keepalive_time"] != "600" {
		t.Errorf("sysctls %v", w.Sysctls)
	}
}
