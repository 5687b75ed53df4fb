package netboot

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestConfigFiles(t *testing.T) {
	for _, c := range []struct {
		name, config string
		want         []ConfigFile
	}{
		{"defaults", "[all]\n", []ConfigFile{{Name: "bcm2711-rpi-4-b.dtb"}, {Name: "kernel8.img"}, {Name: "cmdline.txt"}}},
		{"raspios auto_initramfs", "[all]\nauto_initramfs=1\n",
			[]ConfigFile{{Name: "bcm2711-rpi-4-b.dtb"}, {Name: "kernel8.img"}, {Name: "initramfs8", Optional: true}, {Name: "cmdline.txt"}}},
		{"debian", "[all]\narm_64bit=1\nkernel=vmlinuz-6.1.0-26-arm64\ninitramfs initrd.img-6.1.0-26-arm64 followkernel\ncmdline=cmdline.txt # the node's\n",
			[]ConfigFile{{Name: "bcm2711-rpi-4-b.dtb"}, {Name: "vmlinuz-6.1.0-26-arm64"}, {Name: "initrd.img-6.1.0-26-arm64"}, {Name: "cmdline.txt"}}},
		{"other boards' sections do not count", "[pi5]\nkernel=kernel_2712.img\n[pi4]\ndevice_tree=custom.dtb\n[all]\ncmdline=nodes/cmdline.txt\n",
			[]ConfigFile{{Name: "custom.dtb"}, {Name: "kernel8.img"}, {Name: "nodes/cmdline.txt"}}},
	} {
		if got := ConfigFiles([]byte(c.config)); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}

// TestBootloader: a Pi bootloader in its own namespace gets a proxy-DHCP
// answer, then reads its boot files over TFTP: the image's byte for byte,
// cmdline.txt and config.txt as generated for it. Full DHCP hands it its
// inventory address (a different one is refused), and with DHCP off it
// keeps asking until it gives up, saying how often it asked.
func TestBootloader(t *testing.T) {
	ns := newNetnsPair(t)
	s := startTFTP(t, ns.ServerIP.String()+":69", listenIn(ns.Server), Limits{})
	tb := makeTestImage(t)
	mac, _ := net.ParseMAC(macR1)
	pi := func(addr string) *Bootloader {
		return &Bootloader{MAC: mac, Dir: serialR1, Interface: ns.ClientIf, In: func(fn func() error) error { return in(ns.Client, fn) },
			Addr: netip.MustParseAddr(addr), Retry: 300 * time.Millisecond}
	}

	t.Run("proxy", func(t *testing.T) {
		startDHCPIn(t, ns, DHCPProxy)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var steps []string
		b := pi("192.168.11.1")
		b.Progress = func(s string) { steps = append(steps, s) }
		boot, err := b.Boot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if boot.Server != ns.ServerIP || boot.Offered.IsValid() {
			t.Errorf("server %s, offered %s; want %s and no address", boot.Server, boot.Offered, ns.ServerIP)
		}
		var names []string
		for _, f := range boot.Files {
			names = append(names, f.Name)
			want := fileOf(tb, f.Name)
			if g, ok := s.Files.Generated(serialR1, f.Name); ok {
				want = g
			}
			if !bytes.Equal(f.Data, want) {
				t.Errorf("%s: %d bytes, not the served file's %d", f.Name, len(f.Data), len(want))
			}
		}
		if got := strings.Join(names, " "); got != "config.txt start4.elf fixup4.dat bcm2711-rpi-4-b.dtb kernel8.img cmdline.txt" {
			t.Errorf("read %s", got)
		}
		if len(steps) == 0 || !strings.HasPrefix(steps[0], "DHCP: proxy answer from "+ns.ServerIP.String()) {
			t.Errorf("steps: %q", steps)
		}
	})
	t.Run("full", func(t *testing.T) {
		startDHCPIn(t, ns, DHCPFull)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := pi("192.168.11.9").Boot(ctx); err == nil || !strings.Contains(err.Error(), "the OFFER hands the Pi 192.168.11.1; its address is 192.168.11.9") {
			t.Errorf("a wrong address: %v", err)
		}
		boot, err := pi("192.168.11.1").Boot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if boot.Offered != netip.MustParseAddr("192.168.11.1") {
			t.Errorf("offered %s", boot.Offered)
		}
	})
	t.Run("no DHCP server", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := pi("192.168.11.1").Boot(ctx)
		if err == nil || !strings.Contains(err.Error(), "DISCOVERs") {
			t.Errorf("without DHCP: %v", err)
		}
	})
}
