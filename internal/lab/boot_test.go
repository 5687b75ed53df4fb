package lab

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/fhlab/provision/internal/rpi/image/imagetest"
	"github.com/fhlab/provision/internal/rpi/netboot"
	"github.com/fhlab/provision/internal/testtool"
)

func TestCmdlineIP(t *testing.T) {
	for _, c := range []struct {
		cmdline, ip, host, err string
	}{
		{"console=tty1 root=/dev/nbd0p2 ip=198.51.100.101::198.51.100.1:255.255.255.0:pi-p1-01:eth0:off rootwait\n", "198.51.100.101", "pi-p1-01", ""},
		{"console=tty1 root=/dev/nbd0p2\n", "", "", "has no ip="},
		{"ip=dhcp", "", "", "has no ip="},
		{"ip=300.1.1.1::gw:mask:host", "", "", "cmdline.txt ip=300.1.1.1::gw:mask:host"},
	} {
		ip, host, err := cmdlineIP(c.cmdline)
		got := ""
		if ip.IsValid() {
			got = ip.String()
		}
		if got != c.ip || host != c.host || (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("cmdlineIP(%q) = %s, %q, %v; want %s, %q, %q", c.cmdline, got, host, err, c.ip, c.host, c.err)
		}
	}
}

// TestCheckBoot: what a Pi read passes only when every image file is the
// golden image's and cmdline.txt gives the node's own address and name.
func TestCheckBoot(t *testing.T) {
	testtool.NeedAll(t, "mkfs.vfat:dosfstools", "mcopy:mtools", "mke2fs:e2fsprogs", "debugfs:e2fsprogs")
	dir := t.TempDir()
	img, err := imagetest.MakeBase(dir, imagetest.Flavours()["raspios-trixie"])
	if err != nil {
		t.Fatal(err)
	}
	golden, err := netboot.OpenBootImage(context.Background(), img, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer golden.Close()
	read := func(name string) []byte {
		b, err := golden.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	node := Node{Name: "pi-p1-01", IP: netip.MustParseAddr("198.51.100.101")}
	cmdline := []byte("console=tty1 ip=198.51.100.101::198.51.100.1:255.255.255.0:pi-p1-01:eth0:off\n")
	config := append(read("config.txt"), "# --- provision netboot: generated for pi-p1-01 ---\n[all]\ncmdline=cmdline.txt\n"...)
	boot := func(kernel, cmdline []byte) *netboot.Boot {
		return &netboot.Boot{Files: []netboot.BootFile{{Name: "config.txt", Data: config}, {Name: "start4.elf", Data: read("start4.elf")},
			{Name: "kernel8.img", Data: kernel}, {Name: "cmdline.txt", Data: cmdline}}}
	}
	for _, c := range []struct {
		name string
		boot *netboot.Boot
		err  string
	}{
		{"the Pi's own files", boot(read("kernel8.img"), cmdline), ""},
		{"a kernel not the image's", boot([]byte("another kernel\n"), cmdline), "kernel8.img: 15 bytes served differ from the golden image's"},
		{"another Pi's cmdline.txt", boot(read("kernel8.img"), []byte("ip=198.51.100.102::198.51.100.1:255.255.255.0:pi-p1-02:eth0:off\n")),
			`cmdline.txt gives the Pi 198.51.100.102 named "pi-p1-02"; the node is 198.51.100.101, pi-p1-01`},
		{"a file the image lacks", &netboot.Boot{Files: []netboot.BootFile{{Name: "initramfs8", Data: []byte("x")}}}, "initramfs8: served, but the golden image has no such file"},
	} {
		host, err := checkBoot(c.boot, node, golden)
		if (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s: %v, want %q", c.name, err, c.err)
		}
		if err == nil && host != "pi-p1-01" {
			t.Errorf("%s: hostname %q", c.name, host)
		}
	}
}
