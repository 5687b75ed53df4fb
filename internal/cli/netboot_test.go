package cli

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/rpi/image/imagetest"
	"github.com/fhlab/provision/internal/rpi/netboot"
	"github.com/fhlab/provision/internal/testtool"
)

const netbootInventory = `apiVersion: provision/v1
kind: Lab
metadata: {name: nb-cli}
network: {cidr: 192.168.10.0/23, gateway: 192.168.10.1, dns: [192.168.10.1]}
ssh:
  user: provision
  authorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq3mIzxp6Yw6z1s8m0b1f0ZC8qW2l2Hn0JXQZ3x7a9P admin@lab"]
swarm: {defaultAddrPool: [10.128.0.0/12], defaultAddrPoolMaskLength: 16, managers: 1}
pis:
  racks:
    - {name: m1, count: 1, boot: sd, ipStart: 192.168.10.200, role: manager}
    - {name: r1, count: 2, boot: %BOOT%, ipStart: 192.168.11.1, nodes: r1.csv}
`

func netbootLab(t *testing.T, boot string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "lab.yaml"), []byte(strings.ReplaceAll(netbootInventory, "%BOOT%", boot)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "r1.csv"), []byte("slot,serial,mac\n1,9ffefd01,dc:a6:32:01:00:01\n2,9ffefd02,dc:a6:32:01:00:02\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "lab.yaml")
}

// TestNetbootServeAndStatus runs `provision netboot serve` on loopback
// (DHCP off) with a synthetic golden image, fetches a Pi's cmdline.txt,
// asks for an unknown serial, stops it as Ctrl-C does, and reads the boot
// events back with `provision netboot status`.
func TestNetbootServeAndStatus(t *testing.T) {
	testtool.NeedAll(t, append(imagetest.Tools, "debugfs")...)
	img, err := imagetest.MakeBase(t.TempDir(), imagetest.Flavours()["raspios-trixie"])
	if err != nil {
		t.Fatal(err)
	}
	inv := netbootLab(t, "netboot")
	stateDir := t.TempDir()
	probe, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.LocalAddr().(*net.UDPAddr).AddrPort()
	probe.Close()
	tprobe, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nbdPort := tprobe.Addr().(*net.TCPAddr).Port
	tprobe.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"netboot", "serve", "-i", inv, "--state-dir", stateDir, "--image", img, "--listen", addr.String(), "--dhcp", "off", "--nbd-port", strconv.Itoa(nbdPort)},
			Streams{In: strings.NewReader(""), Out: &out, Err: &errb})
	}()
	waitLine := func(what string) {
		t.Helper()
		for range 600 {
			if strings.Contains(errb.String(), what) {
				return
			}
			select {
			case code := <-done:
				t.Fatalf("serve ended (exit %d) before %q:\n%s", code, what, errb.String())
			case <-time.After(50 * time.Millisecond):
			}
		}
		t.Fatalf("no %q in:\n%s", what, errb.String())
	}
	waitLine("Ctrl-C stops")
	mustHave(t, errb.String(), "netboot: 2 Pis (TFTP directories by serial)", "TFTP on "+addr.String(), "DHCP off")

	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var cmdline bytes.Buffer
	if _, err := netboot.Fetch(ctx, conn, addr, "9ffefd01/cmdline.txt", netboot.FetchOptions{Blksize: 1468, TSize: true}, &cmdline); err != nil {
		t.Fatalf("fetch cmdline.txt: %v\n%s", err, errb.String())
	}
	// Each Pi's root is its own export, served by this process.
	waitLine("root serving")
	mustHave(t, cmdline.String(), fmt.Sprintf("root=/dev/nbd0p2 nbdroot=127.0.0.1:%d/pi-r1-01", nbdPort), "ip=192.168.11.1::192.168.10.1:255.255.254.0:pi-r1-01:eth0:off")
	if _, err := netboot.Fetch(ctx, conn, addr, "deadbeef/start4.elf", netboot.FetchOptions{}, &bytes.Buffer{}); err == nil {
		t.Error("an unknown serial was served")
	}
	waitLine("pi-r1-01")
	waitLine("served cmdline.txt")
	waitLine("unknown directory deadbeef/ refused")

	cancel() // what Ctrl-C does
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve stopped with exit %d:\n%s", code, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop after Ctrl-C")
	}
	mustHave(t, errb.String(), "netboot: stopped")
	if st, err := os.Stat(filepath.Join(stateDir, netboot.BootsFile)); err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("boot events file: %v %v", st, err)
	}

	code, status, serr := run(t, "netboot", "status", "-i", inv, "--state-dir", stateDir)
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, serr)
	}
	lines := strings.Split(status, "\n")
	if len(lines) < 4 || !strings.HasPrefix(lines[0], "NODE") {
		t.Fatalf("status:\n%s", status)
	}
	mustHave(t, status, "pi-r1-01", "127.0.0.1", "served cmdline.txt", "not seen", "(not in the inventory)", "deadbeef")
	if strings.Contains(status, "pi-m1-01") {
		t.Errorf("status lists the SD-booted Pi:\n%s", status)
	}
}

func mustHave(t *testing.T, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("no %q in:\n%s", sub, s)
		}
	}
}

// TestNetbootServeUsage: bad flags and an inventory that netboots nothing
// are usage errors (exit 2) before anything is opened.
func TestNetbootServeUsage(t *testing.T) {
	sd := netbootLab(t, "sd")
	nb := netbootLab(t, "netboot")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"dhcp mode", []string{"netboot", "serve", "-i", nb, "--dhcp", "maybe"}, `--dhcp "maybe"`},
		{"prefix", []string{"netboot", "serve", "-i", nb, "--tftp-prefix", "uuid", "--image", "x.img"}, `"uuid"`},
		{"nothing netboots", []string{"netboot", "serve", "-i", sd, "--image", "x.img"}, "no rack"},
		{"listen", []string{"netboot", "serve", "-i", nb, "--image", "x.img", "--listen", "eth0"}, `--listen "eth0"`},
		{"status output", []string{"netboot", "status", "-i", nb, "-o", "yaml"}, `-o "yaml"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errs := run(t, tt.args...)
			if code != 2 || !strings.Contains(errs, tt.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, errs, tt.want)
			}
		})
	}
}
