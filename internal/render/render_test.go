package render

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/templates"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the current templates")

const exampleInventory = "../../inventory/example.yaml"

var (
	loadExample  = sync.OnceValues(func() (*inventory.Inventory, error) { return inventory.Load(exampleInventory) })
	loadRenderer = sync.OnceValues(func() (*Renderer, error) { return New(templates.FS) })
)

func example(t *testing.T) *inventory.Inventory {
	t.Helper()
	inv, err := loadExample()
	if err != nil {
		t.Fatalf("load %s: %v", exampleInventory, err)
	}
	return inv
}

func renderer(t *testing.T) *Renderer {
	t.Helper()
	r, err := loadRenderer()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func findNode(t *testing.T, inv *inventory.Inventory, name string) *inventory.Node {
	t.Helper()
	for i := range inv.Nodes {
		if inv.Nodes[i].Name == name {
			return &inv.Nodes[i]
		}
	}
	t.Fatalf("%s has no node %s", inv.File, name)
	return nil
}

// TestGolden compares the seeds of representative nodes with
// testdata/golden/<case>/<node>/. `go test ./internal/render -update`
// rewrites them; review the diff before committing.
func TestGolden(t *testing.T) {
	cases := []struct {
		name      string
		inventory string
		nodes     []string
	}{
		{"example", exampleInventory, []string{
			"mgr-1",    // manager VM
			"wrk-01",   // worker VM with custom labels (tier: compute)
			"pi-r1-07", // netboot Pi, matched by MAC
			"pi-r3-01", // SD Pi
		}},
		// Firewall on, extra sysctls and packages, ssh.port 2222, journald
		// logging, no domain, Pis without MAC addresses.
		{"firewall", "testdata/firewall.yaml", []string{"fw-mgr-1", "pi-s1-01"}},
	}
	r := renderer(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inv, err := inventory.Load(c.inventory)
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range c.nodes {
				files, err := r.Node(inv, findNode(t, inv, name))
				if err != nil {
					t.Fatal(err)
				}
				for file, got := range files.ByName() {
					golden := filepath.Join("testdata", "golden", c.name, name, file)
					if *update {
						if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
							t.Fatal(err)
						}
						if err := os.WriteFile(golden, got, 0o644); err != nil {
							t.Fatal(err)
						}
						continue
					}
					want, err := os.ReadFile(golden)
					if err != nil {
						t.Fatalf("%v (run go test ./internal/render -update to create it)", err)
					}
					if !bytes.Equal(got, want) {
						t.Errorf("%s/%s differs from %s (go test ./internal/render -update rewrites it):\n%s",
							name, file, golden, lineDiff(string(want), string(got)))
					}
				}
			}
		})
	}
}

// lineDiff shows the first lines where want and got differ.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < max(len(w), len(g)) && shown < 10; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("line " + itoa(i+1) + ":\n  want: " + wl + "\n  got:  " + gl + "\n")
			shown++
		}
	}
	return b.String()
}

func itoa(i int) string { return strconv.Itoa(i) }

// userData is the part of a rendered user-data the tests look into.
type userData struct {
	Hostname   string   `yaml:"hostname"`
	FQDN       string   `yaml:"fqdn"`
	Packages   []string `yaml:"packages"`
	WriteFiles []struct {
		Path        string `yaml:"path"`
		Permissions string `yaml:"permissions"`
		Content     string `yaml:"content"`
	} `yaml:"write_files"`
	Runcmd [][]string `yaml:"runcmd"`
	Users  []struct {
		Name string   `yaml:"name"`
		Keys []string `yaml:"ssh_authorized_keys"`
	} `yaml:"users"`
	NTP struct {
		Servers []string `yaml:"servers"`
	} `yaml:"ntp"`
}

func (u *userData) file(path string) (string, bool) {
	for _, f := range u.WriteFiles {
		if f.Path == path {
			return f.Content, true
		}
	}
	return "", false
}

// TestUserDataContent renders every node of both inventories and checks,
// without cloud-init, what each user-data must hold.
func TestUserDataContent(t *testing.T) {
	r := renderer(t)
	for _, path := range []string{exampleInventory, "testdata/firewall.yaml"} {
		inv, err := inventory.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		tune := inv.Lab.HostTuning
		for i := range inv.Nodes {
			n := &inv.Nodes[i]
			files, err := r.Node(inv, n)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(files.UserData, []byte("#cloud-config\n")) {
				t.Fatalf("%s: user-data does not start with #cloud-config", n.Name)
			}
			var u userData
			if err := yaml.Unmarshal(files.UserData, &u); err != nil {
				t.Fatalf("%s: user-data is not YAML: %v", n.Name, err)
			}
			if u.Hostname != n.Name {
				t.Errorf("%s: hostname %q", n.Name, u.Hostname)
			}
			if d := inv.Lab.Network.Domain; d != "" && u.FQDN != n.Name+"."+d {
				t.Errorf("%s: fqdn %q", n.Name, u.FQDN)
			}
			if len(u.Users) != 1 || u.Users[0].Name != inv.Lab.SSH.User || !slices.Equal(u.Users[0].Keys, inv.Lab.SSH.AuthorizedKeys) {
				t.Errorf("%s: users = %+v", n.Name, u.Users)
			}
			if !slices.Equal(u.NTP.Servers, inv.Lab.Network.NTP) {
				t.Errorf("%s: ntp servers %v, want %v", n.Name, u.NTP.Servers, inv.Lab.Network.NTP)
			}
			wantPkgs := []string{tune.Docker.Package, "ipvsadm", "chrony"}
			wantPkgs = append(wantPkgs, tune.ExtraPkgs...)
			if n.Kind == inventory.KindPi {
				wantPkgs = append(wantPkgs, "zram-tools")
			}
			if tune.Firewall.Enabled {
				wantPkgs = append(wantPkgs, "nftables")
			}
			for _, p := range wantPkgs {
				if !slices.Contains(u.Packages, p) {
					t.Errorf("%s: packages %v lack %s", n.Name, u.Packages, p)
				}
			}

			daemon, ok := u.file("/etc/docker/daemon.json")
			if !ok {
				t.Fatalf("%s: no daemon.json", n.Name)
			}
			var dj map[string]any
			if err := json.Unmarshal([]byte(daemon), &dj); err != nil {
				t.Fatalf("%s: daemon.json: %v\n%s", n.Name, err, daemon)
			}
			if dj["log-driver"] != tune.Docker.LogDriver {
				t.Errorf("%s: daemon.json log-driver %v", n.Name, dj["log-driver"])
			}
			if opts, ok := dj["log-opts"].(map[string]any); tune.Docker.LogDriver == "json-file" {
				if !ok || opts["max-size"] != tune.Docker.LogMaxSize || opts["max-file"] != itoa(tune.Docker.LogMaxFile) {
					t.Errorf("%s: daemon.json log-opts %v (max-file must be a JSON string)", n.Name, dj["log-opts"])
				}
			} else if ok {
				t.Errorf("%s: daemon.json has log-opts %v for log driver %s", n.Name, opts, tune.Docker.LogDriver)
			}
			if pools, _ := dj["default-address-pools"].([]any); len(pools) != len(tune.Docker.AddressPools) {
				t.Errorf("%s: daemon.json default-address-pools %v", n.Name, dj["default-address-pools"])
			}

			sysctl, _ := u.file("/etc/sysctl.d/90-provision-swarm.conf")
			for _, want := range []string{
				"net.ipv4.tcp_keepalive_time = " + itoa(tune.Keepalive.Time),
				"net.ipv4.neigh.default.gc_thresh3 = " + itoa(tune.Neighbour.GCThresh3),
				"net.ipv4.ip_forward = 1",
				"kernel.pid_max = " + itoa(tune.Limits.PIDMax),
			} {
				if !strings.Contains(sysctl, want+"\n") {
					t.Errorf("%s: sysctl file lacks %q", n.Name, want)
				}
			}
			for k, v := range tune.Sysctls {
				if !strings.Contains(sysctl, k+" = "+v+"\n") {
					t.Errorf("%s: sysctl file lacks hostTuning.sysctls %s", n.Name, k)
				}
			}

			link, _ := u.file("/etc/systemd/network/10-provision-docker.link")
			if !strings.Contains(link, "Driver="+strings.Join(tune.LinkPolicy.Drivers, " ")+"\n") ||
				!strings.Contains(link, "MACAddressPolicy="+tune.LinkPolicy.MACAddressPolicy+"\n") {
				t.Errorf("%s: link file:\n%s", n.Name, link)
			}
			timer, _ := u.file("/etc/systemd/system/provision-netns-tuning.timer")
			if !strings.Contains(timer, "OnUnitActiveSec="+tune.IPVS.Interval+"\n") {
				t.Errorf("%s: timer:\n%s", n.Name, timer)
			}

			_, hasFirewall := u.file("/etc/nftables.conf")
			if hasFirewall != tune.Firewall.Enabled {
				t.Errorf("%s: nftables.conf written = %v, firewall enabled = %v", n.Name, hasFirewall, tune.Firewall.Enabled)
			}
			_, hasZram := u.file("/etc/default/zramswap")
			_, hasCgroup := u.file("/usr/local/sbin/provision-memory-cgroup")
			if isPi := n.Kind == inventory.KindPi; hasZram != isPi || hasCgroup != isPi {
				t.Errorf("%s (%s): zramswap %v, memory cgroup script %v", n.Name, n.Kind, hasZram, hasCgroup)
			}
		}
	}
}

// TestShellScripts parses the scripts user-data writes with sh -n.
func TestShellScripts(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on PATH")
	}
	inv, err := inventory.Load("testdata/firewall.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files, err := renderer(t).Node(inv, findNode(t, inv, "pi-s1-01"))
	if err != nil {
		t.Fatal(err)
	}
	var u userData
	if err := yaml.Unmarshal(files.UserData, &u); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range u.WriteFiles {
		if !strings.HasPrefix(f.Content, "#!/bin/sh\n") {
			continue
		}
		n++
		if f.Permissions != "0755" {
			t.Errorf("%s: permissions %s", f.Path, f.Permissions)
		}
		cmd := exec.Command(sh, "-n")
		cmd.Stdin = strings.NewReader(f.Content)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v\n%s", f.Path, err, out)
		}
	}
	if n != 3 {
		t.Errorf("found %d shell scripts in a Pi's user-data, want 3", n)
	}
}

func TestMetaDataInstanceID(t *testing.T) {
	inv := example(t)
	r := renderer(t)
	n := findNode(t, inv, "pi-r1-07")
	a, err := r.Node(inv, n)
	if err != nil {
		t.Fatal(err)
	}
	var md map[string]string
	if err := yaml.Unmarshal(a.MetaData, &md); err != nil {
		t.Fatal(err)
	}
	if md["instance-id"] != a.InstanceID || a.InstanceID != "fh-lab-pi-r1-07" {
		t.Errorf("instance-id %q, Files.InstanceID %q", md["instance-id"], a.InstanceID)
	}
	if md["local-hostname"] != "pi-r1-07" {
		t.Errorf("local-hostname %q", md["local-hostname"])
	}
	// The id is stable, also when the content changes: a new id would
	// regenerate the node's host keys.
	b, _ := r.Node(inv, n)
	if b.InstanceID != a.InstanceID {
		t.Errorf("instance-id not stable: %s, %s", a.InstanceID, b.InstanceID)
	}
	changed := *inv
	changed.Lab.HostTuning.Keepalive.Time = 601
	c, err := r.Node(&changed, n)
	if err != nil {
		t.Fatal(err)
	}
	if c.InstanceID != a.InstanceID || bytes.Equal(c.UserData, a.UserData) {
		t.Errorf("changed user-data: instance-id %s (want %s), user-data changed: %v", c.InstanceID, a.InstanceID, !bytes.Equal(c.UserData, a.UserData))
	}
}

// TestMissingKeyIsError checks that a template using a key the data does not
// have fails instead of printing "<no value>".
func TestMissingKeyIsError(t *testing.T) {
	inv := example(t)
	n := findNode(t, inv, "wrk-01")
	for name, text := range map[string]string{
		"map key":      "labels: {{ .Node.Labels.nosuchlabel }}\n",
		"struct field": "x: {{ .Tuning.NoSuchField }}\n",
		"include":      `{{ include "files/missing.tmpl" . }}`,
	} {
		t.Run(name, func(t *testing.T) {
			fsys := fstest.MapFS{
				"cloud-init/user-data.tmpl":      {Data: []byte("#cloud-config\n" + text)},
				"cloud-init/meta-data.tmpl":      {Data: []byte("instance-id: {{ quote .InstanceID }}\n")},
				"cloud-init/network-config.tmpl": {Data: []byte("version: 2\n")},
			}
			r, err := New(fsys)
			if err != nil {
				t.Fatal(err)
			}
			_, err = r.Node(inv, n)
			if err == nil {
				t.Fatal("rendering succeeded")
			}
			if !strings.HasPrefix(err.Error(), "render wrk-01: user-data: ") {
				t.Errorf("error %q does not say what failed for which node", err)
			}
		})
	}
	t.Run("template file missing", func(t *testing.T) {
		_, err := New(fstest.MapFS{"cloud-init/user-data.tmpl": {Data: []byte("#cloud-config\n")}})
		if err == nil || !strings.Contains(err.Error(), "meta-data.tmpl is missing") {
			t.Errorf("New = %v", err)
		}
	})
}

func TestQuoteIsYAML(t *testing.T) {
	for _, s := range []string{
		"", "yes", "no", "on", "null", "~", "0644", "1e3", "0x1f", "- a", "a: b", "#x", "'", `"`, `\`,
		"tab\there", "new\nline", "bell\a", "del\x7f", "nel\u0085", "ls\u2028", "bom\ufeff", "émoji 🐳", "{x}", "*a", "&a", "!t", "%p", "@a", "`a",
	} {
		var got string
		if err := yaml.Unmarshal([]byte("v: "+quote(s)+"\n"), &struct{ V *string }{&got}); err != nil {
			t.Errorf("quote(%q) = %s: not YAML: %v", s, quote(s), err)
			continue
		}
		if got != s {
			t.Errorf("quote(%q) = %s reads back as %q", s, quote(s), got)
		}
	}
}

func TestIndent(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"a\n", "  a"},
		{"a\n\nb\n", "  a\n\n  b"},
		{"a\n  \n\tb", "  a\n\n  \tb"},
	} {
		if got := indent(2, c.in); got != c.want {
			t.Errorf("indent(2, %q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestWriteAll renders the example twice: the second run changes nothing,
// no temporary file is left, files have mode 0644, and a file changed by hand
// is put back.
func TestWriteAll(t *testing.T) {
	inv := example(t)
	r := renderer(t)
	dir := t.TempDir()
	ctx := context.Background()

	start := time.Now()
	sum, err := WriteAll(ctx, r, inv, dir, 8)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rendered and wrote %d nodes in %s", len(inv.Nodes), time.Since(start))
	if sum.Written != len(inv.Nodes) || sum.Unchanged != 0 || sum.Files != 3*len(inv.Nodes) {
		t.Errorf("first run: %+v", sum)
	}

	sum, err = WriteAll(ctx, r, inv, dir, 8)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Written != 0 || sum.Unchanged != len(inv.Nodes) || sum.Files != 0 {
		t.Errorf("second run: %+v, want every node unchanged", sum)
	}

	var files int
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		if strings.HasSuffix(p, ".tmp") || strings.HasPrefix(d.Name(), ".") {
			t.Errorf("left behind: %s", p)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode().Perm() != FileMode {
			t.Errorf("%s: mode %v", p, info.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files != 3*len(inv.Nodes) {
		t.Errorf("%d files in %s, want %d", files, dir, 3*len(inv.Nodes))
	}

	// A file edited by hand (and one with the wrong mode) is rewritten.
	edited := filepath.Join(dir, "mgr-2", NetworkConfig)
	if err := os.WriteFile(edited, []byte("version: 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "wrk-03", MetaData), 0o600); err != nil {
		t.Fatal(err)
	}
	sum, err = WriteAll(ctx, r, inv, dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Written != 2 || sum.Files != 2 || sum.Unchanged != len(inv.Nodes)-2 {
		t.Errorf("after editing two files: %+v", sum)
	}
	want, _ := renderer(t).Node(inv, findNode(t, inv, "mgr-2"))
	if got, _ := os.ReadFile(edited); !bytes.Equal(got, want.NetworkConfig) {
		t.Error("edited network-config was not restored")
	}
}

func TestWriteAllCancelled(t *testing.T) {
	inv := example(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := t.TempDir()
	sum, err := WriteAll(ctx, renderer(t), inv, dir, 4)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("WriteAll on a cancelled context = %+v, %v", sum, err)
	}
	if sum.Written+sum.Unchanged >= len(inv.Nodes) {
		t.Errorf("cancelled run still did every node: %+v", sum)
	}
}

func TestWriteAllReportsNode(t *testing.T) {
	inv := example(t)
	dir := t.TempDir()
	// A file where the node's directory should be.
	if err := os.WriteFile(filepath.Join(dir, "pi-r2-05"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := WriteAll(context.Background(), renderer(t), inv, dir, 4)
	if err == nil || !strings.HasPrefix(err.Error(), "write pi-r2-05") {
		t.Fatalf("err = %v, want it to name pi-r2-05", err)
	}
}

// tool finds an external program for the integration tests. Missing, it
// skips the test, except in CI (CI set), where the tool must be installed.
func tool(t *testing.T, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p
		}
	}
	if ci := os.Getenv("CI"); ci != "" && ci != "false" {
		t.Fatalf("%s is not installed, and CI=%s: CI must install Debian's %s", name, ci, pkg)
	}
	t.Skipf("%s is not installed: apt-get install %s to run this test (in CI it fails instead)", name, pkg)
	return ""
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}

// forEach runs fn for every node of inv, at most limit at a time.
func forEach(inv *inventory.Inventory, limit int, fn func(i int, n *inventory.Node)) {
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range inv.Nodes {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			fn(i, &inv.Nodes[i])
		})
	}
	wg.Wait()
}

// TestCloudInitSchema checks every user-data of the example with Debian's
// `cloud-init schema` (about a minute on two cores: cloud-init is Python).
func TestCloudInitSchema(t *testing.T) {
	if testing.Short() {
		t.Skip("runs cloud-init 159 times; skipped with -short")
	}
	cloudInit := tool(t, "cloud-init", "cloud-init")
	inv := example(t)
	dir := t.TempDir()
	if _, err := WriteAll(context.Background(), renderer(t), inv, dir, 0); err != nil {
		t.Fatal(err)
	}
	forEach(inv, 2*runtime.GOMAXPROCS(0), func(_ int, n *inventory.Node) {
		file := filepath.Join(dir, n.Name, UserData)
		out, err := exec.Command(cloudInit, "schema", "--config-file", file).CombinedOutput()
		// Deprecations do not change the exit code, but are errors to come.
		if err != nil || bytes.Contains(out, []byte("Invalid")) || bytes.Contains(bytes.ToLower(out), []byte("deprecat")) ||
			!bytes.Contains(out, []byte("Valid cloud-config")) {
			t.Errorf("%s: cloud-init schema --config-file %s: %v\n%s", n.Name, file, err, out)
		}
	})
}

// TestNetworkConfigNetplan checks every network-config of the example: as
// YAML, and with the real `netplan generate`, which writes systemd-networkd
// files under --root-dir only.
func TestNetworkConfigNetplan(t *testing.T) {
	inv := example(t)
	r := renderer(t)
	_, lan, _ := strings.Cut(inv.Lab.Network.CIDR, "/")
	seeds := make([][]byte, len(inv.Nodes))
	for i := range inv.Nodes {
		n := &inv.Nodes[i]
		files, err := r.Node(inv, n)
		if err != nil {
			t.Fatal(err)
		}
		seeds[i] = files.NetworkConfig
		var nc struct {
			Version   int `yaml:"version"`
			Ethernets map[string]struct {
				Match     map[string]string `yaml:"match"`
				Addresses []string          `yaml:"addresses"`
				Routes    []struct{ To, Via string }
			} `yaml:"ethernets"`
		}
		if err := yaml.Unmarshal(files.NetworkConfig, &nc); err != nil {
			t.Fatalf("%s: network-config is not YAML: %v", n.Name, err)
		}
		if nc.Version != 2 || len(nc.Ethernets) != 1 {
			t.Fatalf("%s: network-config version %d with %d ethernets", n.Name, nc.Version, len(nc.Ethernets))
		}
		for id, e := range nc.Ethernets {
			if !slices.Equal(e.Addresses, []string{n.IP + "/" + lan}) {
				t.Errorf("%s: addresses %v, want %s/%s", n.Name, e.Addresses, n.IP, lan)
			}
			if len(e.Routes) != 1 || e.Routes[0].Via != inv.Lab.Network.Gateway || e.Routes[0].To != "0.0.0.0/0" {
				t.Errorf("%s: routes %+v, want a default route via %s", n.Name, e.Routes, inv.Lab.Network.Gateway)
			}
			switch {
			case n.MAC != "":
				if id != InterfaceByMAC || e.Match["macaddress"] != n.MAC {
					t.Errorf("%s: %s matches %v, want macaddress %s", n.Name, id, e.Match, n.MAC)
				}
			case e.Match["name"] != "e*":
				t.Errorf("%s: %s matches %v, want name e*", n.Name, id, e.Match)
			}
		}
	}

	if testing.Short() {
		t.Skip("runs netplan 159 times; skipped with -short")
	}
	netplan := tool(t, "netplan", "netplan.io")
	root := t.TempDir()
	forEach(inv, 2*runtime.GOMAXPROCS(0), func(i int, n *inventory.Node) {
		dir := filepath.Join(root, n.Name)
		conf := filepath.Join(dir, "etc", "netplan", "50-cloud-init.yaml")
		if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
			t.Error(err)
			return
		}
		// A netplan file has the network-config under a top-level network: key.
		wrapped := "network:\n" + indent(2, string(seeds[i])) + "\n"
		if err := os.WriteFile(conf, []byte(wrapped), 0o600); err != nil {
			t.Error(err)
			return
		}
		out, err := exec.Command(netplan, "generate", "--root-dir", dir).CombinedOutput()
		if err != nil {
			t.Errorf("%s: netplan generate: %v\n%s\n%s", n.Name, err, out, wrapped)
			return
		}
		generated, err := os.ReadFile(filepath.Join(dir, "run", "systemd", "network", "10-netplan-"+nodeInterface(n)+".network"))
		if err != nil {
			t.Errorf("%s: %v (netplan said: %s)", n.Name, err, out)
			return
		}
		for _, want := range []string{"Address=" + n.IP + "/" + lan + "\n", "Gateway=" + inv.Lab.Network.Gateway + "\n"} {
			if !bytes.Contains(generated, []byte(want)) {
				t.Errorf("%s: netplan's networkd file lacks %q:\n%s", n.Name, want, generated)
			}
		}
	})
}

func nodeInterface(n *inventory.Node) string {
	switch {
	case n.MAC != "":
		return InterfaceByMAC
	case n.Kind == inventory.KindPi:
		return InterfacePi
	}
	return InterfaceVM
}

func BenchmarkNode(b *testing.B) {
	inv, err := loadExample()
	if err != nil {
		b.Fatal(err)
	}
	r, err := loadRenderer()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := r.Node(inv, &inv.Nodes[i%len(inv.Nodes)]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWriteAll(b *testing.B) {
	inv, err := loadExample()
	if err != nil {
		b.Fatal(err)
	}
	r, err := loadRenderer()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := WriteAll(context.Background(), r, inv, filepath.Join(dir, itoa(i)), 0); err != nil {
			b.Fatal(err)
		}
	}
}
