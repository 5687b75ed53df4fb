package render

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestAptMirrorSeed: with the lab mirror (mirror.nodes), a VM's and a
// Pi's user-data write its key and apt source, byte for byte the files
// AptMirror gives hosts, and stay valid cloud-config; the mirror is loaded
// once; a renderer without it writes neither; a load that fails fails the
// render with its error.
func TestAptMirrorSeed(t *testing.T) {
	inv := example(t)
	key := "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQGNBGc\n-----END PGP PUBLIC KEY BLOCK-----\n"
	m := &AptMirror{URL: "http://192.168.10.2:8081/", Suite: "provision", Key: []byte(key)}
	loads := 0
	r := renderer(t).WithAptMirror(func() (*AptMirror, error) { loads++; return m, nil })
	want := map[string]string{}
	for _, f := range m.Files() {
		want[f.Path] = f.Content
	}
	if !strings.Contains(want[AptSourcePath], "URIs: http://192.168.10.2:8081/\nSuites: provision\n") || want[AptKeyringPath] != key {
		t.Fatalf("mirror files %q", want)
	}
	for _, name := range []string{"wrk-01", "pi-r1-07"} {
		n := findNode(t, inv, name)
		f, err := r.Node(inv, n)
		if err != nil {
			t.Fatal(err)
		}
		var ud struct {
			WriteFiles []struct{ Path, Permissions, Content string } `yaml:"write_files"`
		}
		if err := yaml.Unmarshal(f.UserData, &ud); err != nil {
			t.Fatalf("%s user-data: %v", name, err)
		}
		got := map[string]string{}
		for _, w := range ud.WriteFiles {
			if w.Path == AptSourcePath || w.Path == AptKeyringPath {
				got[w.Path] = w.Content
				if w.Permissions != "0644" {
					t.Errorf("%s: %s mode %s", name, w.Path, w.Permissions)
				}
			}
		}
		for p, c := range want {
			if got[p] != c {
				t.Errorf("%s: %s is %q, want %q", name, p, got[p], c)
			}
		}
		if name == "wrk-01" {
			ci := filepath.Join(t.TempDir(), "user-data")
			os.WriteFile(ci, f.UserData, 0o644)
			out, err := exec.Command(tool(t, "cloud-init", "cloud-init"), "schema", "--config-file", ci).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "Valid cloud-config") {
				t.Errorf("cloud-init schema: %v\n%s", err, out)
			}
		}
	}
	if loads != 1 {
		t.Errorf("mirror loaded %d times, want once", loads)
	}

	plain, err := renderer(t).Node(inv, findNode(t, inv, "wrk-01"))
	if err != nil || strings.Contains(string(plain.UserData), AptSourcePath) {
		t.Errorf("a renderer without the mirror wrote its source (%v)", err)
	}
	failing := renderer(t).WithAptMirror(func() (*AptMirror, error) {
		return nil, errors.New("mirror.nodes: the lab mirror has no key yet")
	})
	if _, err := failing.Node(inv, findNode(t, inv, "wrk-01")); err == nil || !strings.Contains(err.Error(), "render wrk-01: mirror.nodes: the lab mirror has no key yet") {
		t.Errorf("render with a mirror that cannot load: %v", err)
	}
}
