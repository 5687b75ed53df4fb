package cli

import (
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhlab/provision/internal/rpi/netboot/eeprom"
	"github.com/fhlab/provision/internal/rpi/netboot/nbdroot"
	"github.com/fhlab/provision/internal/rpi/netboot/units"
	"github.com/fhlab/provision/internal/testtool"
)

const localInv = "../../inventory/local.yaml" // rack p1 netboots pi-p1-01..03, p2 boots from SD

func needNetbootTools(t *testing.T, tools ...string) {
	t.Helper()
	testtool.NeedAll(t, tools...)
}

// tinyGolden is a 16 MiB ext4 image.
func tinyGolden(t *testing.T) string {
	t.Helper()
	needNetbootTools(t, "mke2fs", "qemu-img", "qemu-nbd")
	img := filepath.Join(t.TempDir(), "golden.img")
	if out, err := exec.Command("mke2fs", "-q", "-t", "ext4", "-F", img, "16M").CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v: %s", err, out)
	}
	return img
}

func TestNetbootEEPROM(t *testing.T) {
	out := filepath.Join(t.TempDir(), "bootconf.txt")
	code, stdout, stderr := run(t, "netboot", "eeprom", "--boot-order", "network", "--prefix", "mac", "--tftp-ip", "192.168.10.5", "-o", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	got, _ := os.ReadFile(out)
	want, _ := eeprom.Render(eeprom.Config{BootOrder: 0xf2, Prefix: eeprom.ByMAC, TFTPIP: netip.MustParseAddr("192.168.10.5")})
	if string(got) != string(want) {
		t.Errorf("%s:\n%s\nwant:\n%s", out, got, want)
	}
	for _, w := range []string{"rpi-eeprom-config --apply bootconf.txt", "rpi-eeprom-update -d -f", "BOOT_ORDER=0xf2, TFTP_PREFIX=2"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("output lacks %q:\n%s", w, stdout)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--boot-order", "0xf41"}, "never tries the network"},
		{[]string{"--prefix", "hostname"}, "use serial"},
		{[]string{"--tftp-ip", "tftp.lab"}, "IPv4 address"},
	} {
		code, _, stderr := run(t, append([]string{"netboot", "eeprom", "-o", "-"}, c.args...)...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, %s (want 2, %q)", c.args, code, stderr, c.want)
		}
	}
}

func TestNetbootInstall(t *testing.T) {
	img := tinyGolden(t)
	root := t.TempDir()
	state := t.TempDir()
	code, stdout, stderr := run(t, "netboot", "install", "-i", localInv, "--image", img, "--state-dir", state, "--nbd-host", "198.51.100.1", "--root", root)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	sys := filepath.Join(root, units.Dir)
	serve, err := os.ReadFile(filepath.Join(sys, units.Serve))
	if err != nil {
		t.Fatal(err)
	}
	inv, _ := filepath.Abs(localInv)
	if !strings.Contains(string(serve), " netboot serve -i "+inv+" --image "+img+" --state-dir "+state+" --nbd-host 198.51.100.1 --nbd-port 10809 --roots=false\n") {
		t.Errorf("%s:\n%s", units.Serve, serve)
	}
	for _, n := range []string{"pi-p1-01", "pi-p1-02", "pi-p1-03"} {
		if _, err := os.Readlink(filepath.Join(sys, units.RootTarget+".wants", units.Root(n))); err != nil {
			t.Errorf("no unit for netbooted %s: %v", n, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(sys, units.RootTarget+".wants", units.Root("pi-p2-01"))); err == nil {
		t.Error("an SD-booted Pi got a root unit")
	}
	if !strings.Contains(stdout, "systemctl daemon-reload") {
		t.Errorf("output:\n%s", stdout)
	}
	if analyze, err := exec.LookPath("systemd-analyze"); err == nil {
		out, err := exec.Command(analyze, "verify", "--man=no", filepath.Join(sys, units.Serve),
			filepath.Join(sys, units.RootTarget+".wants", units.Root("pi-p1-01")), filepath.Join(sys, units.RootTarget)).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "" {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	} else if os.Getenv("CI") != "" {
		t.Fatal("CI: needs systemd-analyze")
	}

	// Bad input changes nothing.
	empty := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--image", img}, "--nbd-host: the Pis need this server's address"},
		{[]string{"--nbd-host", "198.51.100.1"}, "rack p1 names no image"},
		{[]string{"--image", filepath.Join(empty, "nope.img"), "--nbd-host", "198.51.100.1"}, "does not exist"},
	} {
		code, _, stderr := run(t, append([]string{"netboot", "install", "-i", localInv, "--state-dir", state, "--root", empty}, c.args...)...)
		if code == 0 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, %s (want %q)", c.args, code, stderr, c.want)
		}
	}
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Errorf("a refused install wrote %d entries", len(ents))
	}
}

func TestNetbootReset(t *testing.T) {
	img := tinyGolden(t)
	state := t.TempDir()
	dir := filepath.Join(state, "netboot", "roots")

	code, _, stderr := run(t, "netboot", "reset", "pi-p1-01", "-i", localInv, "--state-dir", state)
	if code != 2 || !strings.Contains(stderr, "has no root overlay") {
		t.Errorf("reset before any overlay: exit %d, %s", code, stderr)
	}
	code, _, stderr = run(t, "netboot", "reset", "pi-p2-01", "-i", localInv, "--state-dir", state, "--image", img)
	if code != 2 || !strings.Contains(stderr, "local.yaml:") || !strings.Contains(stderr, "boots from sd") {
		t.Errorf("reset of an SD-booted Pi: exit %d, %s", code, stderr)
	}

	// Serve pi-p1-01's root as another process would, write to it, and
	// try to reset it meanwhile.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	x, err := nbdroot.New(context.Background(), nbdroot.Config{Golden: img, Dir: dir, Bind: "127.0.0.1", BasePort: port, Nodes: []nbdroot.Node{{Name: "pi-p1-01"}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); x.Wait() })
	if err := x.Start(ctx); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = run(t, "netboot", "reset", "pi-p1-01", "-i", localInv, "--state-dir", state)
	if code != 1 || !strings.Contains(stderr, "its root is being served: qemu-nbd pid") || !strings.Contains(stderr, "systemctl stop provision-netboot-root@pi-p1-01") {
		t.Errorf("reset of a served root: exit %d, %s", code, stderr)
	}
	ex, _ := x.Export("pi-p1-01")
	data := filepath.Join(t.TempDir(), "data")
	os.WriteFile(data, []byte(strings.Repeat("x", 4096)), 0o600)
	needNetbootTools(t, "nbdcopy")
	if out, err := exec.Command("nbdcopy", "--flush", data, ex.URI()).CombinedOutput(); err != nil {
		t.Fatalf("nbdcopy: %v: %s", err, out)
	}
	cancel()
	x.Wait()
	written, _ := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "qcow2", img, ex.Overlay).CombinedOutput()
	if !strings.Contains(string(written), "mismatch") {
		t.Fatalf("the write is not in the overlay: %s", written)
	}

	code, stdout, stderr := run(t, "netboot", "reset", "pi-p1-01", "-i", localInv, "--state-dir", state)
	if code != 0 || !strings.Contains(stdout, "pi-p1-01: root reset") {
		t.Fatalf("reset: exit %d, %s %s", code, stdout, stderr)
	}
	if out, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "qcow2", img, ex.Overlay).CombinedOutput(); err != nil {
		t.Errorf("after reset the overlay still differs from the golden image: %v %s", err, out)
	}
}
