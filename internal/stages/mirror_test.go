package stages_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/mirror"
	"github.com/fhlab/provision/internal/render"
	"github.com/fhlab/provision/internal/stages"
	"github.com/fhlab/provision/templates"
)

// TestNodesMirror: with mirror.nodes the seeds of VMs and Pis carry the lab
// mirror's key from mirror.dir; before `mirror build` made it, rendering a
// seed fails and says what to run; without mirror.nodes the renderer is
// left as it is.
func TestNodesMirror(t *testing.T) {
	base, err := os.ReadFile("../../inventory/local.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	csv, err := os.ReadFile("../../inventory/racks/local-p1.csv")
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "racks"), 0o755)
	os.WriteFile(filepath.Join(dir, "racks", "local-p1.csv"), csv, 0o644)
	load := func(mirrorYAML string) *inventory.Inventory {
		t.Helper()
		path := filepath.Join(dir, "lab.yaml")
		if err := os.WriteFile(path, append(append([]byte{}, base...), mirrorYAML...), 0o644); err != nil {
			t.Fatal(err)
		}
		inv, err := inventory.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		return inv
	}
	r, err := render.New(templates.FS)
	if err != nil {
		t.Fatal(err)
	}
	if got := stages.NodesMirror(r, load("mirror: {url: \"http://198.51.100.1:8081/\", dir: m}\n"), dir); got != r {
		t.Errorf("without mirror.nodes the renderer changed")
	}
	inv := load("mirror: {url: \"http://198.51.100.1:8081/\", dir: m, nodes: true}\n")
	vm, pi := inv.Node("vm-1"), inv.Node("pi-p1-01")
	if vm == nil || pi == nil {
		t.Fatal("local.yaml has no vm-1 or pi-p1-01")
	}
	_, err = stages.NodesMirror(r, inv, dir).Node(inv, vm)
	if want := "render vm-1: mirror.nodes: the lab mirror has no key yet: run provision mirror build -i " + inv.File; err == nil || err.Error() != want {
		t.Errorf("render before mirror build: %v, want %q", err, want)
	}
	keyPath := filepath.Join(dir, "m", mirror.RepoDir, mirror.PublicKey)
	os.MkdirAll(filepath.Dir(keyPath), 0o755)
	os.WriteFile(keyPath, []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\nLABKEY\n"), 0o644)
	withMirror := stages.NodesMirror(r, inv, dir)
	for _, n := range []*inventory.Node{vm, pi} {
		f, err := withMirror.Node(inv, n)
		if err != nil {
			t.Fatal(err)
		}
		ud := string(f.UserData)
		if !strings.Contains(ud, "LABKEY") || !strings.Contains(ud, "URIs: http://198.51.100.1:8081/") {
			t.Errorf("%s's user-data has no lab mirror:\n%s", n.Name, ud)
		}
	}
}
