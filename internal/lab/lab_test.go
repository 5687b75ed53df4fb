package lab

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNamesFitIFNAMSIZ(t *testing.T) {
	prefix := "pl123456"
	if err := checkPrefix(prefix); err != nil {
		t.Fatal(err)
	}
	if got := bridgeName(prefix); len(got) > maxIfName {
		t.Errorf("bridge %q longer than %d", got, maxIfName)
	}
	taken := map[string]bool{}
	for i := 0; i < 2000; i++ {
		name := "r1-pi-" + string(rune('a'+i%26)) + strings.Repeat("x", i%40)
		v := vethName(prefix, name, taken)
		if len(v) > maxIfName || !strings.HasPrefix(v, prefix+"-") {
			t.Fatalf("veth %q for %q", v, name)
		}
		if taken[v] {
			t.Fatalf("veth %q given twice", v)
		}
		taken[v] = true
	}
	if a, b := vethName(prefix, "mgr-1", nil), vethName(prefix, "mgr-1", nil); a != b {
		t.Errorf("veth names not stable: %q, %q", a, b)
	}
	// A collision picks another name, deterministically.
	first := vethName(prefix, "mgr-1", nil)
	if again := vethName(prefix, "mgr-1", map[string]bool{first: true}); again == first || len(again) > maxIfName {
		t.Errorf("collision not resolved: %q", again)
	}
}

func TestPrefix(t *testing.T) {
	p := PrefixFor("local")
	if err := checkPrefix(p); err != nil || p != PrefixFor("local") || p == PrefixFor("fh-lab") {
		t.Errorf("PrefixFor: %q %v", p, err)
	}
	for _, bad := range []string{"", "p", "PL12", "pl-1", "pl123456789", "1abc"} {
		if checkPrefix(bad) == nil {
			t.Errorf("prefix %q accepted", bad)
		}
	}
}

func testConfig() Config {
	return Config{
		Prefix:         "pltest1",
		Network:        netip.MustParsePrefix("198.51.100.0/24"),
		Gateway:        netip.MustParseAddr("198.51.100.1"),
		SSHUser:        "provision",
		AuthorizedKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHcjgQRybxHZT2TrGXRYPHDLzXXLu1RGtVA9vPdKXMns test"},
	}
}

func TestNewChecksConfig(t *testing.T) {
	if l, err := New(testConfig()); err != nil || l.StateDir() != "/run/provision-lab/pltest1" || l.DataDir() != "/var/lib/provision-lab/pltest1" || l.Bridge() != "pltest1-br" {
		t.Fatalf("New: %v %+v", err, l)
	}
	for name, mut := range map[string]func(*Config){
		"prefix":    func(c *Config) { c.Prefix = "Bad" },
		"network":   func(c *Config) { c.Network = netip.Prefix{} },
		"gateway":   func(c *Config) { c.Gateway = netip.MustParseAddr("10.0.0.1") },
		"root user": func(c *Config) { c.SSHUser = "root" },
		"no keys":   func(c *Config) { c.AuthorizedKeys = nil },
		"state dir": func(c *Config) { c.StateDir = "relative" },
		"same dirs": func(c *Config) { c.StateDir, c.DataDir = "/x", "/x" },
	} {
		c := testConfig()
		mut(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%s: New accepted %+v", name, c)
		}
	}
}

func TestCheckSpecs(t *testing.T) {
	l, err := New(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr
	err = l.checkSpecs([]NodeSpec{
		{Name: "mgr-1", IP: ip("198.51.100.11")},
		{Name: "mgr-1", IP: ip("198.51.100.12")},    // twice
		{Name: "vm-1", IP: ip("198.51.100.11")},     // shared address
		{Name: "out", IP: ip("192.0.2.5")},          // outside
		{Name: "gw", IP: ip("198.51.100.1")},        // the gateway
		{Name: "bad_name", IP: ip("198.51.100.30")}, // not a hostname
		{Name: strings.Repeat("a", 63), IP: ip("198.51.100.31")},
	})
	for _, want := range []string{"listed twice", "share address", "outside the lab network", "the network's or the host's", "not a valid hostname", "socket path"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("checkSpecs error %v does not mention %q", err, want)
		}
	}
}

func TestManifestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ManifestFile)
	if m, err := loadManifest(path); m != nil || err != nil {
		t.Fatalf("missing manifest: %v %v", m, err)
	}
	m := &Manifest{Version: manifestVersion, Prefix: "pltest1", Nodes: []Node{
		{Name: "b", IP: netip.MustParseAddr("198.51.100.12")},
		{Name: "a", IP: netip.MustParseAddr("198.51.100.11"), DockerSocket: "/x/docker.sock"},
	}}
	if err := m.save(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("manifest mode: %v %v", fi.Mode(), err)
	}
	got, err := loadManifest(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Nodes) != 2 || got.Nodes[0].Name != "a" || got.Nodes[0].DockerSocket != "/x/docker.sock" {
		t.Errorf("round trip: %+v", got)
	}
	if got.Nodes[0].DockerHost() != "unix:///x/docker.sock" {
		t.Errorf("DockerHost: %s", got.Nodes[0].DockerHost())
	}
	os.WriteFile(path, []byte(`{"version": 99}`), 0o600)
	if _, err := loadManifest(path); err == nil || !strings.Contains(err.Error(), "version 99") {
		t.Errorf("future manifest: %v", err)
	}
}

func TestSSHDConfig(t *testing.T) {
	l, err := New(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	n := l.newNode(NodeSpec{Name: "mgr-1", IP: netip.MustParseAddr("198.51.100.11")}, nil)
	cfg := l.sshdConfig(n)
	for _, want := range []string{
		"ListenAddress 198.51.100.11:22\n",
		"HostKey /run/provision-lab/pltest1/nodes/mgr-1/ssh_host_ed25519_key\n",
		"PidFile /run/provision-lab/pltest1/nodes/mgr-1/sshd.pid\n",
		"AuthorizedKeysFile /run/provision-lab/pltest1/authorized_keys\n",
		"AllowUsers provision\n",
		"PasswordAuthentication no\n",
		"UsePAM no\n",
		"AllowStreamLocalForwarding yes\n",
		"SetEnv DOCKER_HOST=unix:///run/provision-lab/pltest1/nodes/mgr-1/docker.sock\n",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("sshd_config lacks %q:\n%s", want, cfg)
		}
	}
}

func TestHostKeyStable(t *testing.T) {
	dir := t.TempDir()
	pub, fp, err := ensureHostKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	pub2, fp2, err := ensureHostKey(dir)
	if err != nil || pub != pub2 || fp != fp2 || !strings.HasPrefix(pub, "ssh-ed25519 ") || !strings.HasPrefix(fp, "SHA256:") {
		t.Errorf("host key: %q %q / %q %q %v", pub, fp, pub2, fp2, err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, hostKeyFile)); fi.Mode().Perm() != 0o600 {
		t.Errorf("host key mode %v", fi.Mode())
	}
}

func TestMissingError(t *testing.T) {
	err := &MissingError{Missing: []string{"dockerd", "containerd", "sshd"}, Pkgs: []string{"docker.io", "openssh-server"}}
	if got := err.Error(); !strings.Contains(got, "install docker.io, openssh-server") || !strings.Contains(got, "apt-get install -y docker.io openssh-server") {
		t.Errorf("MissingError: %s", got)
	}
	if !strings.Contains(ErrNotRoot.Error(), "lab up needs root") {
		t.Errorf("ErrNotRoot: %v", ErrNotRoot)
	}
}

func TestShimSocket(t *testing.T) {
	got := shimSocket("/usr/bin/containerd-shim-runc-v2 -namespace moby -id abc -address /run/x/containerd.sock")
	if !strings.HasPrefix(got, "/run/containerd/s/") || len(got) != len("/run/containerd/s/")+64 {
		t.Errorf("shimSocket: %q", got)
	}
	if shimSocket("/usr/sbin/dockerd --data-root /x") != "" {
		t.Error("dockerd taken for a shim")
	}
}

func TestBusyboxImage(t *testing.T) {
	busybox := "/bin/busybox"
	if _, err := staticArch(busybox); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%v", err)
		}
		t.Skipf("%v", err)
	}
	var buf bytes.Buffer
	id, err := WriteBusyboxImage(&buf, ImageOptions{Busybox: busybox})
	if err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if id2, _ := WriteBusyboxImage(&again, ImageOptions{Busybox: busybox}); id2 != id || !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Errorf("image not reproducible: %s %s", id, id2)
	}
	files := readTar(t, buf.Bytes())
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil || len(manifest) != 1 {
		t.Fatalf("manifest.json: %v %s", err, files["manifest.json"])
	}
	mf := manifest[0]
	if mf.RepoTags[0] != BusyboxImageTag || "sha256:"+strings.TrimSuffix(mf.Config, ".json") != id || len(mf.Layers) != 1 {
		t.Errorf("manifest: %+v (id %s)", mf, id)
	}
	var cfg struct {
		Architecture string
		OS           string
		RootFS       struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(files[mf.Config], &cfg); err != nil || cfg.OS != "linux" || cfg.Architecture == "" || len(cfg.RootFS.DiffIDs) != 1 {
		t.Fatalf("config: %v %s", err, files[mf.Config])
	}
	layer := readTar(t, files[mf.Layers[0]])
	if len(layer["bin/busybox"]) == 0 {
		t.Error("layer has no bin/busybox")
	}
	for _, a := range []string{"sh", "nc", "sleep", "hostname", "ip", "ifconfig"} {
		if _, ok := layer["bin/"+a]; !ok {
			t.Errorf("layer has no applet link bin/%s", a)
		}
	}
}

// readTar maps a tar's entry names to their contents.
func readTar(t *testing.T, data []byte) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = b
	}
}
