package cli

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fhlab/provision/internal/rpi/image/imagetest"
	"github.com/fhlab/provision/internal/testtool"
)

// TestImageCommands runs image build (twice: the second reuses the image),
// image seed and image inspect on a synthetic Raspberry Pi OS Trixie base.
func TestImageCommands(t *testing.T) {
	testtool.NeedAll(t, append(imagetest.Tools, "debugfs", "dumpe2fs")...)
	dir := t.TempDir()
	if _, err := imagetest.TrixieDefinition(dir, "trixie"); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "base.img")
	if err := imagetest.WriteTree(dir, map[string]string{
		"lab.yaml": `apiVersion: provision/v1
kind: Lab
metadata: {name: cli-lab}
network: {cidr: 192.168.10.0/23, gateway: 192.168.10.1}
ssh: {user: lab, authorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq3mIzxp6Yw6z1s8m0b1f0ZC8qW2l2Hn0JXQZ3x7a9P admin@lab"]}
swarm: {managers: 1}
pis:
  image: ` + filepath.Join(dir, "trixie.yaml") + `
  racks:
    - {name: m1, count: 1, boot: sd, ipStart: 192.168.10.200, role: manager}
    - {name: r1, count: 3, boot: sd, ipStart: 192.168.11.1, image: ` + filepath.Join(dir, "trixie.yaml") + `}
`,
	}); err != nil {
		t.Fatal(err)
	}
	lab := filepath.Join(dir, "lab.yaml")
	state := filepath.Join(dir, "state")
	code, out, errs := run(t, "image", "build", "-i", lab, "--state-dir", state)
	if code != 0 || !strings.Contains(out, "image trixie: built in") || !strings.Contains(out, "raspios-trixie, seed nocloud") {
		t.Fatalf("image build: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = run(t, "image", "build", "-i", lab, "--state-dir", state, "--image", filepath.Join(dir, "trixie.yaml"))
	if code != 0 || !strings.Contains(out, "unchanged (same input hash)") {
		t.Fatalf("second image build: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = run(t, "image", "build", "-i", lab, "--state-dir", state, "--plan")
	if code != 0 || !regexp.MustCompile(`trixie\s+reuse\s+[0-9a-f]{16}\s+same input hash`).MatchString(out) {
		t.Fatalf("image build --plan: exit %d\n%s\n%s", code, out, errs)
	}
	// The built image against its base: the customised files are named.
	built := filepath.Join(state, "images", "trixie", "trixie.img")
	code, out, errs = run(t, "image", "diff", base, built)
	for _, w := range []string{"differ in", "partition 1 (FAT32)", "config.txt", "partition 2 (ext4)", "/etc/machine-id", "inodes ("} {
		if code != 1 || !strings.Contains(out, w) {
			t.Errorf("image diff base built: exit %d, no %q:\n%s\n%s", code, w, out, errs)
		}
	}
	if code, _, errs := run(t, "image", "diff", built); code != 2 || !strings.Contains(errs, "accepts 2 arg(s)") {
		t.Errorf("image diff with one image: exit %d\n%s", code, errs)
	}
	code, out, errs = run(t, "image", "diff", built, built)
	if code != 0 || !strings.HasPrefix(out, "identical: ") {
		t.Errorf("image diff of an image with itself: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = run(t, "image", "seed", "-i", lab, "--state-dir", state, "--rack", "r1")
	if code != 0 || !strings.Contains(out, "seeds: 3 Pis, 3 written") {
		t.Fatalf("image seed: exit %d\n%s\n%s", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(state, "seeds", "pi-r1-03", "user-data")); err != nil {
		t.Error(err)
	}
	// The runbook's pi-image stage: the image is reused, the seeds unchanged.
	code, out, errs = run(t, "plan", "-i", lab, "--state-dir", state)
	if code != 0 || !strings.Contains(out, "image trixie") || !strings.Contains(out, "unchanged") {
		t.Errorf("plan: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = run(t, "apply", "-i", lab, "--state-dir", state, "--only", "pi-image")
	if code != 0 || !strings.Contains(out, "image trixie unchanged") || !strings.Contains(out, "seeds: 4 Pis, 1 written, 3 unchanged") {
		t.Errorf("apply --only pi-image: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = run(t, "image", "inspect", base)
	if code != 0 || !strings.Contains(out, "raspios-trixie (debian trixie), seed: nocloud") || !strings.Contains(out, `label "bootfs"`) {
		t.Errorf("image inspect: exit %d\n%s\n%s", code, out, errs)
	}
	code, _, errs = run(t, "image", "inspect", lab)
	if code != 1 || !strings.Contains(errs, "not a Raspberry Pi disk image") {
		t.Errorf("image inspect of a YAML file: exit %d\n%s", code, errs)
	}
	code, out, _ = run(t, "image", "--help")
	if code != 0 || !strings.Contains(out, "provision image build -i lab.yaml --image raspios-trixie") || !strings.Contains(out, "bmaptool copy") {
		t.Errorf("image --help lacks its examples:\n%s", out)
	}
}
