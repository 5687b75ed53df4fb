package render

import (
	"bytes"
	"strconv"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/fhlab/provision/internal/inventory"
)

// TestHostFiles checks that the files an image bakes in are exactly the
// write_files of a real node's user-data: same paths, modes and contents.
func TestHostFiles(t *testing.T) {
	inv := example(t)
	r := renderer(t)
	for _, tc := range []struct {
		kind, node string
		want       []string
		not        []string
	}{
		{inventory.KindPi, "pi-r1-01", []string{"/etc/default/zramswap", "/usr/local/sbin/provision-memory-cgroup", "/etc/docker/daemon.json"}, nil},
		{inventory.KindVM, "mgr-1", []string{"/etc/sysctl.d/90-provision-swarm.conf"}, []string{"/etc/default/zramswap"}},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			files, err := r.HostFiles(inv, tc.kind)
			if err != nil {
				t.Fatal(err)
			}
			seed, err := r.Node(inv, findNode(t, inv, tc.node))
			if err != nil {
				t.Fatal(err)
			}
			var ud userData
			if err := yaml.Unmarshal(seed.UserData, &ud); err != nil {
				t.Fatal(err)
			}
			if len(files) != len(ud.WriteFiles) {
				t.Errorf("%d host files, user-data of %s writes %d", len(files), tc.node, len(ud.WriteFiles))
			}
			byPath := map[string]HostFile{}
			for _, f := range files {
				byPath[f.Path] = f
			}
			for _, w := range ud.WriteFiles {
				f, ok := byPath[w.Path]
				if !ok {
					t.Errorf("%s: in user-data, not in HostFiles", w.Path)
					continue
				}
				if !bytes.Equal(f.Content, []byte(w.Content)) || "0"+strconv.FormatUint(uint64(f.Mode), 8) != w.Permissions {
					t.Errorf("%s: HostFiles has mode %o and other content than user-data (%s)", w.Path, f.Mode, w.Permissions)
				}
			}
			for _, p := range tc.want {
				if _, ok := byPath[p]; !ok {
					t.Errorf("%s missing", p)
				}
			}
			for _, p := range tc.not {
				if _, ok := byPath[p]; ok {
					t.Errorf("%s should not be there for %s", p, tc.kind)
				}
			}
		})
	}
}

// TestBakedUserDataInstallsNothing: a Pi booting a golden image gets no
// package list (the image has them), and still its files and commands.
func TestBakedUserDataInstallsNothing(t *testing.T) {
	inv := example(t)
	r := renderer(t)
	d, err := NewData(inv, findNode(t, inv, "pi-r1-01"))
	if err != nil {
		t.Fatal(err)
	}
	d.Baked = true
	f, err := r.Render(d)
	if err != nil {
		t.Fatal(err)
	}
	var ud struct {
		userData      `yaml:",inline"`
		PackageUpdate *bool `yaml:"package_update"`
	}
	if err := yaml.Unmarshal(f.UserData, &ud); err != nil {
		t.Fatalf("baked user-data is not YAML: %v\n%s", err, f.UserData)
	}
	if len(ud.Packages) != 0 || ud.PackageUpdate != nil {
		t.Errorf("baked user-data installs packages %v (package_update %v)", ud.Packages, ud.PackageUpdate)
	}
	if len(ud.WriteFiles) == 0 || len(ud.Runcmd) == 0 {
		t.Errorf("baked user-data lost its files or commands")
	}
}
