package rootfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func noKeyring(string) bool  { return false }
func hasKeyring(string) bool { return true }

func TestArgs(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		keyring func(string) bool
		want    []string // must appear, in this order
		notWant []string
		tail    []string // suite, dir, mirror
	}{
		{
			name:    "defaults",
			opts:    Options{Dir: "/tmp/r"},
			keyring: noKeyring,
			want: []string{
				"--variant=apt", "--architectures=arm64", "--components=main,non-free-firmware",
				"--format=directory", "--hook-dir=/hooks",
			},
			notWant: []string{"--keyring=" + DebianKeyring},
			tail:    []string{"bookworm", "/tmp/r", "http://deb.debian.org/debian"},
		},
		{
			name: "definition overrides",
			opts: Options{Dir: "/x", Suite: "trixie", Mirror: "http://mirror.example/debian", Arch: "armhf",
				Components: []string{"main", "contrib", "non-free-firmware"}},
			keyring: hasKeyring,
			want: []string{"--architectures=armhf", "--components=main,contrib,non-free-firmware",
				"--keyring=" + DebianKeyring},
			tail: []string{"trixie", "/x", "http://mirror.example/debian"},
		},
		{
			name:    "explicit keyring wins",
			opts:    Options{Dir: "/x", Keyring: "/etc/k.gpg"},
			keyring: hasKeyring,
			want:    []string{"--keyring=/etc/k.gpg"},
			notWant: []string{"--keyring=" + DebianKeyring},
			tail:    []string{"bookworm", "/x", "http://deb.debian.org/debian"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := withDefaults(tt.opts, tt.keyring)
			if err := check(&o); err != nil {
				t.Fatal(err)
			}
			args := Args(o, "/hooks")
			i := 0
			for _, w := range tt.want {
				j := slices.Index(args[i:], w)
				if j < 0 {
					t.Fatalf("args lack %q (in order after %d): %q", w, i, args)
				}
				i += j + 1
			}
			for _, nw := range tt.notWant {
				if slices.Contains(args, nw) {
					t.Errorf("args have %q: %q", nw, args)
				}
			}
			if got := args[len(args)-3:]; !slices.Equal(got, tt.tail) {
				t.Errorf("positional args = %q, want %q", got, tt.tail)
			}
			for _, a := range args[:len(args)-3] {
				if !strings.HasPrefix(a, "--") {
					t.Errorf("option %q before the positional args does not start with --", a)
				}
			}
		})
	}
}

func TestArgsPackages(t *testing.T) {
	o := withDefaults(Options{Dir: "/r", Packages: []string{"htop", "docker.io", "htop"}}, noKeyring)
	var include string
	for _, a := range Args(o, "/h") {
		if v, ok := strings.CutPrefix(a, "--include="); ok {
			include = v
		}
	}
	got := strings.Split(include, ",")
	for _, p := range append(BasePackages(), "htop") {
		if !slices.Contains(got, p) {
			t.Errorf("--include lacks %s: %s", p, include)
		}
	}
	if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
		t.Errorf("--include is not sorted and unique: %s", include)
	}
	// What issue 10 asks the image to have.
	for _, p := range []string{"systemd", "systemd-sysv", "udev", "dbus", "docker.io", "openssh-server",
		"cloud-init", "netplan.io", "linux-image-arm64", "raspi-firmware", "zram-tools", "ipvsadm", "chrony", "sudo"} {
		if !slices.Contains(got, p) {
			t.Errorf("--include lacks %s", p)
		}
	}
}

func TestArgsSlimKeepsCopyright(t *testing.T) {
	args := Args(withDefaults(Options{Dir: "/r"}, noKeyring), "/h")
	ex := slices.Index(args, "--dpkgopt=path-exclude=/usr/share/doc/*")
	in := slices.Index(args, "--dpkgopt=path-include=/usr/share/doc/*/copyright")
	if ex < 0 || in < 0 || in < ex {
		t.Errorf("want the doc exclude followed by the copyright include (dpkg: last match wins), got %q", args)
	}
}

func TestEnv(t *testing.T) {
	base := []string{"PATH=/root/.pyenv/shims:/usr/bin", "SOURCE_DATE_EPOCH=1", "LANG=de_DE.UTF-8", "HOME=/root"}
	tests := []struct {
		epoch int64
		want  []string
		not   []string
	}{
		{0, []string{"PATH=" + SystemPath, "HOME=/root", "LC_ALL=C.UTF-8", "DEBIAN_FRONTEND=noninteractive"},
			[]string{"SOURCE_DATE_EPOCH=1", "LANG=de_DE.UTF-8", "PATH=/root/.pyenv/shims:/usr/bin"}},
		{1764460800, []string{"SOURCE_DATE_EPOCH=1764460800"}, []string{"SOURCE_DATE_EPOCH=1"}},
	}
	for _, tt := range tests {
		env := Env(base, Options{SourceDateEpoch: tt.epoch})
		for _, w := range tt.want {
			if !slices.Contains(env, w) {
				t.Errorf("epoch %d: env lacks %q: %q", tt.epoch, w, env)
			}
		}
		for _, n := range tt.not {
			if slices.Contains(env, n) {
				t.Errorf("epoch %d: env has %q: %q", tt.epoch, n, env)
			}
		}
	}
}

func TestCheckRefuses(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no dir", Options{}, "Options.Dir"},
		{"option as package", Options{Dir: "/r", Packages: []string{"--allow-unauthenticated"}}, `Packages: "--allow-unauthenticated"`},
		{"shell in package", Options{Dir: "/r", Packages: []string{"a;rm -rf /"}}, "Packages"},
		{"space in module", Options{Dir: "/r", InitramfsModules: []string{"ext4 vfat"}}, "InitramfsModules"},
		{"newline in hostname", Options{Dir: "/r", Hostname: "a\nb"}, "Hostname"},
		{"empty component", Options{Dir: "/r", Components: []string{"main", ""}}, "Components"},
		{"mirror scheme", Options{Dir: "/r", Mirror: "deb.debian.org/debian"}, "Mirror"},
		{"negative epoch", Options{Dir: "/r", SourceDateEpoch: -1}, "SourceDateEpoch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := withDefaults(tt.opts, noKeyring)
			err := check(&o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("check = %v, want an error naming %q", err, tt.want)
			}
		})
	}
}

func TestModules(t *testing.T) {
	o := Options{InitramfsModules: []string{"nvme", "ext4"}}
	got := modules(&o)
	if !slices.Equal(got[:len(InitramfsModules())], InitramfsModules()) || got[len(got)-1] != "nvme" || len(got) != len(InitramfsModules())+1 {
		t.Errorf("modules = %q", got)
	}
	for _, m := range []string{"sdhci-iproc", "mmc_block", "genet", "nbd", "virtio_blk", "virtio_pci", "ext4"} {
		if !slices.Contains(got, m) {
			t.Errorf("module list lacks %s", m)
		}
	}
}

// The hooks are shell scripts: sh -n parses each one, and the hooks that
// only write files run against a scratch root.
func TestHookScripts(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	o := withDefaults(Options{Dir: "/r", InitramfsModules: []string{"nvme"}}, noKeyring)
	hooks := hookFiles(&o, modules(&o))
	names := hookNames(hooks)
	for _, n := range names {
		if !strings.HasPrefix(n, "essential") && !strings.HasPrefix(n, "customize") {
			t.Errorf("hook %s: mmdebstrap runs only essential*/customize*/... names", n)
		}
		if out, err := exec.Command(sh, "-n", "-c", hooks[n]).CombinedOutput(); err != nil {
			t.Errorf("hook %s does not parse: %v: %s", n, err, out)
		}
	}
	if !strings.Contains(hooks["customize10-provision-initramfs.sh"], "\nnvme\n") ||
		!strings.Contains(hooks["customize10-provision-initramfs.sh"], "MODULES=list") {
		t.Errorf("initramfs hook lacks MODULES=list or the module list:\n%s", hooks["customize10-provision-initramfs.sh"])
	}
	// Each diversion added in the essential hook is removed under the same
	// name by the customize hook that runs the program once.
	ess := hooks["essential00-provision-divert-initramfs.sh"]
	if !strings.Contains(ess, `--divert "$p.provision" --add "$p"`) {
		t.Errorf("essential hook does not divert $p to $p.provision:\n%s", ess)
	}
	for hook, p := range map[string]string{
		"customize05-provision-ca-certificates.sh": "/usr/sbin/update-ca-certificates",
		"customize10-provision-initramfs.sh":       "/usr/sbin/update-initramfs",
	} {
		if !strings.Contains(ess, " "+p) || !strings.Contains(hooks[hook], "p="+p+"\n") ||
			!strings.Contains(hooks[hook], `--divert "$p.provision" --remove "$p"`) {
			t.Errorf("%s is not diverted in the essential hook and restored in %s", p, hook)
		}
	}

	root := t.TempDir()
	for _, d := range []string{"etc/ssh", "etc/docker", "var/lib/dbus", "var/lib/docker/swarm", "etc/cloud/cloud.cfg.d"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for f, s := range map[string]string{
		"etc/machine-id": "0123456789abcdef0123456789abcdef\n", "var/lib/dbus/machine-id": "x\n",
		"etc/ssh/ssh_host_ed25519_key": "k", "etc/ssh/ssh_host_ed25519_key.pub": "k", "etc/ssh/sshd_config": "keep",
		"etc/docker/key.json": "{}", "var/lib/docker/swarm/state.json": "{}", "etc/hostname": "buildhost\n",
	} {
		if err := os.WriteFile(filepath.Join(root, f), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"customize20-provision-identity.sh", "customize30-provision-cloud-init.sh"} {
		if out, err := exec.Command(sh, "-c", hooks[n], n, root).CombinedOutput(); err != nil {
			t.Fatalf("hook %s: %v: %s", n, err, out)
		}
	}
	read := func(f string) string {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			return "<" + err.Error() + ">"
		}
		return string(b)
	}
	if got := read("etc/machine-id"); got != "" {
		t.Errorf("machine-id = %q, want empty", got)
	}
	if got := read("etc/hostname"); got != "debian-pi\n" {
		t.Errorf("hostname = %q", got)
	}
	if got := read("etc/hosts"); !strings.Contains(got, "127.0.1.1\tdebian-pi\n") {
		t.Errorf("hosts = %q", got)
	}
	if got := read("etc/ssh/sshd_config"); got != "keep" {
		t.Errorf("sshd_config = %q, want it kept", got)
	}
	for _, gone := range []string{"var/lib/dbus/machine-id", "etc/ssh/ssh_host_ed25519_key", "etc/ssh/ssh_host_ed25519_key.pub",
		"etc/docker/key.json", "var/lib/docker/swarm"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); !os.IsNotExist(err) {
			t.Errorf("%s is still there (%v)", gone, err)
		}
	}
	if l, err := os.Readlink(filepath.Join(root, "etc/resolv.conf")); err != nil || l != "../run/systemd/resolve/stub-resolv.conf" {
		t.Errorf("resolv.conf -> %q, %v", l, err)
	}
	if got := read("etc/cloud/cloud.cfg.d/90-provision-datasource.cfg"); !strings.Contains(got, "\ndatasource_list: [ NoCloud, None ]\n") {
		t.Errorf("datasource config = %q", got)
	}
}
