package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhlab/provision/internal/labtest"
	"github.com/fhlab/provision/internal/rpi/image/imagetest"
	"github.com/fhlab/provision/internal/rpi/netboot"
	"github.com/fhlab/provision/internal/testtool"
)

// TestApplyWithNetbootedPis rehearses the Pis' own boot on the emulated
// lab: lab up --boot netboot powers the netbooted rack's Pis on without
// starting them; lab boot with no server running gives up, saying how
// often each Pi asked for DHCP; then apply serves them (pi-boot: proxy
// DHCP and TFTP from a golden image, an NBD root each) while lab boot does
// what each Pi's bootloader does (DISCOVER, its boot files, checked against
// the golden image and its inventory entry) and starts them; apply goes on
// to discover, swarm and verify with the Pis in the swarm, and the netboot
// events record both Pis' files.
func TestApplyWithNetbootedPis(t *testing.T) {
	labtest.Require(t)
	testtool.NeedAll(t, "mkfs.vfat:dosfstools", "mcopy:mtools", "mke2fs:e2fsprogs", "debugfs:e2fsprogs", "qemu-img:qemu-utils", "qemu-nbd:qemu-utils")
	f := labtest.New(t, t.TempDir(), &bytes.Buffer{})
	f.Swarm = "{defaultAddrPool: [10.128.0.0/12], defaultAddrPoolMaskLength: 20, managers: 1, ingress: {enabled: false}}"
	img, err := imagetest.MakeBase(t.TempDir(), imagetest.Flavours()["raspios-trixie"])
	if err != nil {
		t.Fatal(err)
	}
	csv := "slot,serial,mac\n1,9ffe0d01,dc:a6:32:0d:00:01\n2,9ffe0d02,dc:a6:32:0d:00:02\n"
	if err := os.WriteFile(filepath.Join(f.Dir, "q1.csv"), []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	invName := fmt.Sprintf("nb%s.yaml", strings.TrimPrefix(f.Lab.Prefix(), "pls"))
	f.Inventory(t, invName, "    - {name: nm-%d, count: 1, role: manager, ipStart: {{ADDR 11}}}",
		"    - {name: q1, count: 2, boot: netboot, ipStart: {{ADDR 101}}, nodes: q1.csv}")
	inv := filepath.Join(f.Dir, invName)
	state := filepath.Join(f.Dir, "cli-state")
	t.Cleanup(func() {
		if code, out, errs := run(t, "lab", "down", "-i", inv, "--state-dir", state); code != 0 {
			t.Errorf("lab down: exit %d\n%s\n%s", code, out, errs)
		}
	})
	must := func(args ...string) (string, string) {
		t.Helper()
		code, out, errs := run(t, args...)
		if code != 0 {
			t.Fatalf("provision %s: exit %d\n%s\n%s", strings.Join(args, " "), code, out, errs)
		}
		return out, errs
	}

	out, _ := must("lab", "up", "-i", inv, "--state-dir", state, "--boot", "netboot")
	if !strings.Contains(out, "2 Pis wait for their network boot") {
		t.Errorf("lab up:\n%s", out)
	}
	out, _ = must("lab", "status", "-i", inv, "--state-dir", state)
	if strings.Count(out, "(waiting for its network boot)") != 2 || !strings.Contains(out, "1 of 3 nodes up") {
		t.Errorf("lab status before the boot:\n%s", out)
	}

	// Nothing serves them yet: each Pi asks and asks, then gives up.
	code, out, errs := run(t, "lab", "boot", "-i", inv, "--state-dir", state, "--image", img, "--timeout", "2s", "--retry", "300ms")
	if code == 0 || !strings.Contains(errs, "boot pi-q1-01: dhcp: no answer to") || !strings.Contains(out, "0 of 2 netbooted Pis run") {
		t.Errorf("lab boot without a server: exit %d\n%s\n%s", code, out, errs)
	}

	type result struct {
		code      int
		out, errs string
	}
	booted := make(chan result, 1)
	go func() {
		code, out, errs := run(t, "lab", "boot", "-i", inv, "--state-dir", state, "--image", img, "--timeout", "3m", "--retry", "500ms")
		booted <- result{code, out, errs}
	}()
	code, out, errs = run(t, "apply", "-i", inv, "--state-dir", state, "--only", "validate,render,pi-boot,discover,swarm,verify",
		"--netboot-image", img, "--netboot-listen", f.Addr(1))
	b := <-booted
	if b.code != 0 || !strings.Contains(b.out, "2 of 2 netbooted Pis run") {
		t.Errorf("lab boot: exit %d\n%s\n%s", b.code, b.out, b.errs)
	}
	for _, want := range []string{"pi-q1-01     DHCP: proxy answer from " + f.Addr(1), "pi-q1-02     read cmdline.txt", "boot files match the golden image", "running as pi-q1-02"} {
		if !strings.Contains(b.errs, want) {
			t.Errorf("lab boot's progress lacks %q:\n%s", want, b.errs)
		}
	}
	if code != 0 {
		t.Fatalf("apply: exit %d\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{"netboot: 2 Pis", "✓ form the Docker Swarm", "✓ verify"} {
		if !strings.Contains(errs, want) {
			t.Errorf("apply's progress lacks %q:\n%s", want, errs)
		}
	}
	out, _ = must("lab", "status", "-i", inv, "--state-dir", state)
	if !strings.Contains(out, "3 of 3 nodes up") || strings.Count(out, "active") != 3 {
		t.Errorf("lab status after apply:\n%s", out)
	}
	boots, err := netboot.LoadBoots(state)
	if err != nil {
		t.Fatal(err)
	}
	for _, pi := range []string{"pi-q1-01", "pi-q1-02"} {
		if r := boots.Pis[pi]; r == nil || !strings.Contains(r.LastStep, "cmdline.txt") {
			t.Errorf("%s's last netboot step: %+v", pi, r)
		}
	}
}
