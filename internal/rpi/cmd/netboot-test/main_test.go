package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhlab/provision/internal/rpi/image/imagetest"
	"github.com/fhlab/provision/internal/rpi/smoke"
	"github.com/fhlab/provision/internal/testtool"
)

func TestAddProofRunsBeforeTheSmokeCheck(t *testing.T) {
	ud := []byte("#cloud-config\nhostname: pi-r1-01\nruncmd:\n  - [systemctl, enable, --now, ssh]\n")
	got, err := addProof(ud, "pi-r1-01 0123abcd")
	if err != nil {
		t.Fatal(err)
	}
	withSmoke, err := smoke.SmokeUserData(got, "#!/bin/sh\n")
	if err != nil {
		t.Fatal(err)
	}
	s := string(withSmoke)
	ssh, show, check := strings.Index(s, "enable, --now, ssh"), strings.Index(s, "SMOKE netboot_proof="), strings.Index(s, "start, --no-block, "+smoke.UnitName)
	if ssh < 0 || show < 0 || check < 0 || !(ssh < show && show < check) {
		t.Errorf("runcmd order wrong (ssh %d, proof line %d, check %d):\n%s", ssh, show, check, s)
	}
	boot := strings.Index(s, "bootcmd:\n  - [sh, -c, mkdir -p /var/lib/provision-netboot && echo 'pi-r1-01 0123abcd' > "+proofPath+" && sync]")
	if boot < 0 {
		t.Errorf("no bootcmd writing the proof:\n%s", s)
	}
	if !strings.Contains(s, "hostname: pi-r1-01") || !strings.Contains(s, "SMOKE netboot_proof=") {
		t.Errorf("user-data:\n%s", s)
	}
	// cloud-init itself accepts it.
	if _, err := exec.LookPath("cloud-init"); err == nil {
		f := filepath.Join(t.TempDir(), "user-data")
		os.WriteFile(f, withSmoke, 0o600)
		if out, err := exec.Command("cloud-init", "schema", "--config-file", f).CombinedOutput(); err != nil {
			t.Errorf("cloud-init schema: %v\n%s", err, out)
		}
	}
	if _, err := addProof([]byte("- not a mapping\n"), "x"); err == nil {
		t.Error("a list as user-data is accepted")
	}
}

// TestDebugfsCatReadsTheRootPartition: the proof is read from the root
// file system inside a whole-disk image (not from byte 0), and a file that
// is not there is told apart from an image that cannot be read.
func TestDebugfsCatReadsTheRootPartition(t *testing.T) {
	testtool.NeedAll(t, append(imagetest.Tools, "debugfs")...)
	img, err := imagetest.MakeBase(t.TempDir(), imagetest.Flavours()["raspios-trixie"])
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	got, err := debugfsCat(ctx, img, "/etc/hostname")
	if err != nil || got != "raspberrypi\n" {
		t.Errorf("/etc/hostname: %q, %v", got, err)
	}
	if _, err := debugfsCat(ctx, img, proofPath); err == nil || !strings.Contains(err.Error(), "File not found") {
		t.Errorf("a missing file: %v", err)
	}
	junk := filepath.Join(t.TempDir(), "junk.img")
	os.WriteFile(junk, make([]byte, 1<<20), 0o644)
	if _, err := debugfsCat(ctx, junk, proofPath); err == nil || strings.Contains(err.Error(), "File not found") {
		t.Errorf("an unreadable image: %v", err)
	}
}
