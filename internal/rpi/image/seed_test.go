package image

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhlab/provision/internal/render"
)

func buildFlavour(t *testing.T, dir, flavour string, pis int) (*Builder, *Result) {
	t.Helper()
	base := makeBase(t, dir, flavours()[flavour])
	def := writeBaseDefinition(t, dir, "img-"+flavour, base, sha256Of(t, base), "")
	b := newBuilder(t, dir, testLab(t, dir, def, pis))
	res, err := b.Build(context.Background(), def)
	if err != nil {
		t.Fatal(err)
	}
	return b, res
}

// TestSeedsTrixie writes the seeds of a Trixie image's Pis, checks them with
// cloud-init and netplan, and applies one to a copy of the image.
func TestSeedsTrixie(t *testing.T) {
	needImageTools(t)
	dir := t.TempDir()
	b, img := buildFlavour(t, dir, "raspios-trixie", 3)
	seeds := filepath.Join(dir, "seeds")
	sum, err := WriteSeeds(context.Background(), b, "", seeds)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Nodes != 4 || sum.Written != 4 {
		t.Errorf("summary %+v", sum)
	}
	again, err := WriteSeeds(context.Background(), b, "r1", seeds)
	if err != nil || again.Nodes != 3 || again.Unchanged != 3 {
		t.Errorf("second run on rack r1: %+v %v", again, err)
	}

	node := filepath.Join(seeds, "pi-r1-02")
	m, files, err := ReadSeed(node)
	if err != nil {
		t.Fatal(err)
	}
	if m.Partition != 1 || m.Flavour != RaspiOSTrixie || m.InstanceID != "test-lab-pi-r1-02" || m.ImageSHA256 != img.M.SHA256 {
		t.Errorf("seed manifest %+v", m)
	}
	cmdline := string(files["/cmdline.txt"])
	for _, w := range []string{"root=PARTUUID=295ac2ff-02", "cgroup_enable=memory cgroup_memory=1", "ds=nocloud;s=file:///boot/firmware/;i=test-lab-pi-r1-02"} {
		if !strings.Contains(cmdline, w) {
			t.Errorf("cmdline.txt %q lacks %q", cmdline, w)
		}
	}
	if strings.Count(cmdline, "\n") != 1 {
		t.Errorf("cmdline.txt is not one line: %q", cmdline)
	}
	if bytes.Contains(files["/user-data"], []byte("packages:")) {
		t.Errorf("a baked image's user-data installs packages:\n%s", files["/user-data"])
	}

	// cloud-init and netplan accept the node's files.
	cloudInit := need(t, "cloud-init", "cloud-init")
	out, err := exec.Command(cloudInit, "schema", "--config-file", filepath.Join(node, "user-data")).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("Valid cloud-config")) {
		t.Errorf("cloud-init schema: %v\n%s", err, out)
	}
	netplan := need(t, "netplan", "netplan.io")
	root := t.TempDir()
	conf := filepath.Join(root, "etc", "netplan", "50-cloud-init.yaml")
	if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
		t.Fatal(err)
	}
	var wrapped strings.Builder
	wrapped.WriteString("network:\n")
	for line := range strings.Lines(string(files["/network-config"])) {
		wrapped.WriteString("  " + line)
	}
	if err := os.WriteFile(conf, []byte(wrapped.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(netplan, "generate", "--root-dir", root).CombinedOutput(); err != nil {
		t.Errorf("netplan generate: %v\n%s", err, out)
	}
	gen, _ := filepath.Glob(filepath.Join(root, "run", "systemd", "network", "*.network"))
	if len(gen) != 1 || !bytes.Contains(fileSum(t, gen[0]), []byte("Address=192.168.11.2/23")) {
		t.Errorf("netplan generated %v", gen)
	}

	// Flashing: the image, then the node's seed on its boot partition.
	card := filepath.Join(dir, "card.img")
	if err := os.WriteFile(card, fileSum(t, img.Image), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ApplySeed(context.Background(), card, node); err != nil {
		t.Fatal(err)
	}
	l := img.M.Layout
	fsckAll(t, card, l)
	for p, want := range files {
		if got := mtype(t, card, l.Boot, strings.TrimPrefix(p, "/")); !bytes.Equal(got, want) {
			t.Errorf("%s on the card: %q, want %q", p, got, want)
		}
	}
}

// TestSeedsBookworm: Bookworm has no cloud-init; its seed is firstrun.sh.
func TestSeedsBookworm(t *testing.T) {
	needImageTools(t)
	dir := t.TempDir()
	b, _ := buildFlavour(t, dir, "raspios-bookworm", 1)
	seeds := filepath.Join(dir, "seeds")
	if _, err := WriteSeeds(context.Background(), b, "r1", seeds); err != nil {
		t.Fatal(err)
	}
	_, files, err := ReadSeed(filepath.Join(seeds, "pi-r1-01"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := files["/"+render.UserData]; ok {
		t.Errorf("a Bookworm seed has user-data")
	}
	script := files["/firstrun.sh"]
	if !bytes.Contains(script, []byte("address1=192.168.11.1/23,192.168.10.1")) || !bytes.Contains(script, []byte("NAME=pi-r1-01")) {
		t.Errorf("firstrun.sh:\n%s", script)
	}
	if out, err := exec.Command("bash", "-n", "-c", string(script)).CombinedOutput(); err != nil {
		t.Errorf("bash -n firstrun.sh: %v\n%s", err, out)
	}
	if c := string(files["/cmdline.txt"]); !strings.Contains(c, "systemd.run=/boot/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target") {
		t.Errorf("cmdline.txt %q", c)
	}
}
