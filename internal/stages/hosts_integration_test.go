package stages_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/hosts"
	"github.com/fhlab/provision/internal/hosts/hostlab"
	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/lab"
	"github.com/fhlab/provision/internal/labtest"
	"github.com/fhlab/provision/internal/mirror"
	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/render"
	"github.com/fhlab/provision/internal/stages"
	"github.com/fhlab/provision/internal/state"
	"github.com/fhlab/provision/templates"
)

// repackCache keeps the packages dpkg-repack made between test runs (a
// cache, like Go's build cache: repacking is slow).
const repackCache = "/var/cache/provision/test-repacked"

// TestIntegrationHosts brings an existing machine into the lab: a Debian
// root of its own booted by systemd-nspawn with its own systemd, reachable
// only on the lab bridge, no Docker in it. The lab mirror is built from
// .deb files on this machine (apt's cache, and installed packages repacked)
// and served on the bridge; the hosts stage installs Docker from it, writes
// the tuning and starts Docker; the swarm stage joins the host with
// kind=host and its labels; verify passes; a second run changes nothing.
// Then: a sysctl set by hand in another file is refused and overwritten
// only with Force; a state that does not know the host's swarm leaves it
// alone; a changed host key is refused.
func TestIntegrationHosts(t *testing.T) {
	if why := hostlab.Missing(); why != "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set, so the host lab must run: missing %s", why)
		}
		t.Skipf("skipping: missing %s", why)
	}
	for _, tool := range []string{"dpkg-repack", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("CI is set: missing %s", tool)
			}
			t.Skipf("skipping: missing %s", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	dir := t.TempDir()
	f := labtest.New(t, dir, testWriter{t})
	f.Swarm = "{defaultAddrPool: [10.128.0.0/12], defaultAddrPoolMaskLength: 20, managers: 1, ingress: {enabled: false}}"
	f.Inventory(t, "lab.yaml", "", "    - {name: m, count: 1, role: manager, ipStart: {{ADDR 11}}}")
	// The inventory with the host and the mirror.
	path := filepath.Join(dir, "lab.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mirrorURL := fmt.Sprintf("http://%s:8081/", f.Addr(1))
	data = append(data, fmt.Sprintf("hosts:\n  - {name: byo-1, address: %s, sshUser: root, labels: {owner: lab}}\nmirror: {url: %q, dir: mirror}\n", f.Addr(21), mirrorURL)...)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var managers []inventory.Node
	for _, n := range inv.Nodes {
		if n.Kind != inventory.KindHost {
			managers = append(managers, n)
		}
	}
	f.Up(t, ctx, managers)

	// The emulated host, trusting the inventory's key as the bootstrap
	// script makes it.
	var host inventory.Node
	for _, n := range inv.Nodes {
		if n.Kind == inventory.KindHost {
			host = n
		}
	}
	h, err := hostlab.Boot(ctx, hostlab.Config{
		Prefix: f.Lab.Prefix(), Name: host.Name, IP: host.IP + "/24", Bridge: f.Lab.Bridge(),
		RootTar: hostlab.RootTar(), Dir: filepath.Join(dir, "byo-1"), Console: filepath.Join(dir, "byo-1.console"),
		Bootstrap: hosts.Bootstrap(host, inv.Lab.SSH.AuthorizedKeys),
	})
	t.Cleanup(func() {
		if err := h.Stop(); err != nil {
			t.Errorf("stop the emulated host: %v", err)
		}
	})
	if err != nil {
		console, _ := os.ReadFile(filepath.Join(dir, "byo-1.console"))
		t.Fatalf("%v\n%s", err, console)
	}

	// The mirror, from .deb files already on this machine.
	start := time.Now()
	sum, err := mirror.Build(ctx, mirror.Config{
		Dir: filepath.Join(dir, "mirror"), Lab: inv.Lab.Metadata.Name, Packages: hosts.Packages(&inv.Lab.HostTuning),
		Archs: []string{"amd64"}, DebDirs: []string{"/var/cache/provision/debs", "/var/cache/apt/archives"}, FromInstalled: true, NativeArch: "amd64",
		RepackCache: repackCache,
	})
	if err != nil {
		t.Fatalf("mirror build: %v", err)
	}
	t.Logf("mirror: %d packages in %s", len(sum.Packages["amd64"]), time.Since(start).Round(time.Second))
	srv, err := mirror.Listen(filepath.Join(dir, "mirror"), net.JoinHostPort(f.Addr(1), "8081"), nil)
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx) }()
	t.Cleanup(func() { stop(); <-served })

	r, err := render.New(templates.FS)
	if err != nil {
		t.Fatal(err)
	}
	stateDir := f.StateDir
	apply := func(t *testing.T, force bool, dir string) (int, string, error) {
		t.Helper()
		var out, status bytes.Buffer
		env := f.Env(t, inv, &out, &status)
		if dir != "" {
			st, err := state.Load(dir, inv.Lab.Metadata.Name)
			if err != nil {
				t.Fatal(err)
			}
			env.StateDir, env.State = dir, st
		}
		conn := stages.NewConnector(stages.SSH{KeyPath: f.KeyPath})
		defer conn.Close()
		changed := -1
		err := pipeline.Pipeline{Stages: []pipeline.Stage{stages.Hosts{Renderer: r, SSH: conn, Force: force, Changed: &changed}}}.Run(ctx, env)
		return changed, out.String() + status.String(), err
	}

	changed, out, err := apply(t, false, "")
	if err != nil {
		t.Fatalf("hosts apply: %v\n%s", err, out)
	}
	if changed < 10 || !strings.Contains(out, "package docker.io ipvsadm chrony: install") {
		t.Fatalf("first apply changed %d items:\n%s", changed, out)
	}
	t.Logf("first apply: %d changes", changed)
	changed, out, err = apply(t, false, "")
	if err != nil || changed != 0 || !strings.Contains(out, "1 hosts: nothing changed") {
		t.Fatalf("second apply: %d changes, %v\n%s", changed, err, out)
	}

	// Docker runs on the host, with the tuning.
	ssh := func(cmd string) string {
		t.Helper()
		c := exec.CommandContext(ctx, "ssh", "-i", f.KeyPath, "-o", "BatchMode=yes", "-o", "UserKnownHostsFile="+filepath.Join(stateDir, "known_hosts"),
			"root@"+host.IP, cmd)
		o, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("ssh %s: %v: %s", cmd, err, o)
		}
		return strings.TrimSpace(string(o))
	}
	if got := ssh("systemctl is-active docker.service; docker info --format '{{.ServerVersion}}'; sysctl -n net.ipv4.tcp_keepalive_time"); !strings.HasPrefix(got, "active\n20.10") || !strings.HasSuffix(got, "\n600") {
		t.Fatalf("on the host: %q", got)
	}

	// The swarm stage joins it like any node; verify runs a service on it.
	if _, out, err := runSwarm(t, f, inv, testWriter{t}); err != nil {
		t.Fatalf("swarm: %v\n%s", err, out)
	} else if !regexp.MustCompile(`byo-1 +worker +ready .*kind=host,owner=lab`).MatchString(out) {
		t.Fatalf("byo-1 is not in the swarm with its labels:\n%s", out)
	}
	// The test image: on the lab's manager, and on the host over SSH as an
	// admin would load it.
	loadBusybox(t, f)
	var img bytes.Buffer
	if _, err := lab.WriteBusyboxImage(&img, lab.ImageOptions{}); err != nil {
		t.Fatal(err)
	}
	load := exec.CommandContext(ctx, "ssh", "-i", f.KeyPath, "-o", "BatchMode=yes", "-o", "UserKnownHostsFile="+filepath.Join(stateDir, "known_hosts"), "root@"+host.IP, "docker load")
	load.Stdin = &img
	if o, err := load.CombinedOutput(); err != nil {
		t.Fatalf("load the test image on the host: %v: %s", err, o)
	}
	{
		var out, status bytes.Buffer
		env := f.Env(t, inv, &out, &status)
		conn := stages.NewConnector(stages.SSH{KeyPath: f.KeyPath})
		err := pipeline.Pipeline{Stages: []pipeline.Stage{stages.Verify{SSH: conn, Image: lab.BusyboxImageTag}}}.Run(ctx, env)
		conn.Close()
		if err != nil {
			t.Fatalf("verify: %v\n%s%s", err, out.String(), status.String())
		}
	}
	if changed, out, err := apply(t, false, ""); err != nil || changed != 0 {
		t.Fatalf("apply after joining: %d changes, %v\n%s", changed, err, out)
	}

	// A sysctl set by hand in another file: reported, left alone, and
	// overwritten only with Force.
	ssh("printf '# set by hand\\nnet.ipv4.tcp_keepalive_time = 7200\\n' > /etc/sysctl.d/99-local.conf && sysctl -q -w net.ipv4.tcp_keepalive_time=7200")
	changed, out, err = apply(t, false, "")
	if err == nil || changed != 0 || !strings.Contains(err.Error(), "net.ipv4.tcp_keepalive_time = 7200 (/etc/sysctl.d/99-local.conf:2), the tuning says 600") {
		t.Fatalf("conflict without force: %d changes, %v\n%s", changed, err, out)
	}
	if got := ssh("sysctl -n net.ipv4.tcp_keepalive_time"); got != "7200" {
		t.Fatalf("the conflicting sysctl was changed without --force: %s", got)
	}
	changed, out, err = apply(t, true, "")
	if err != nil || changed != 1 {
		t.Fatalf("conflict with force: %d changes, %v\n%s", changed, err, out)
	}
	if got := ssh("sysctl -n net.ipv4.tcp_keepalive_time; cat /etc/sysctl.d/99-local.conf"); got != "600\n# set by hand\n# provision --force: net.ipv4.tcp_keepalive_time = 7200" {
		t.Fatalf("after --force: %q", got)
	}

	// A state that does not know the host's swarm: the host is in another
	// swarm as far as this run can tell, and is left alone.
	other := t.TempDir()
	kh, _ := os.ReadFile(filepath.Join(stateDir, "known_hosts"))
	os.WriteFile(filepath.Join(other, "known_hosts"), kh, 0o600)
	ssh("sed -i 's/^net.ipv4.tcp_keepalive_intvl = .*/net.ipv4.tcp_keepalive_intvl = 61/' /etc/sysctl.d/90-provision-swarm.conf")
	changed, out, err = apply(t, false, other)
	if err == nil || changed != 0 || !strings.Contains(err.Error(), "already in another swarm as node") {
		t.Fatalf("another swarm: %d changes, %v\n%s", changed, err, out)
	}
	if changed, out, err := apply(t, false, ""); err != nil || changed != 1 {
		t.Fatalf("the file changed by hand is written back: %d changes, %v\n%s", changed, err, out)
	}

	// A changed host key is refused, and the message says how to accept
	// the new one; done as it says, a re-run converges.
	ssh("rm -f /etc/ssh/ssh_host_* && ssh-keygen -q -A && systemctl restart ssh")
	_, out, err = apply(t, false, "")
	if err == nil || !strings.Contains(err.Error(), "host key for "+host.IP+" changed") {
		t.Fatalf("changed host key: %v\n%s", err, out)
	}
	known := filepath.Join(f.StateDir, "known_hosts")
	fix := "ssh-keygen -R '" + host.IP + "' -f " + known
	if !strings.Contains(err.Error(), fix) {
		t.Fatalf("the refusal does not say %q:\n%v", fix, err)
	}
	if out, err := exec.Command("ssh-keygen", "-R", host.IP, "-f", known).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", fix, err, out)
	}
	changed, out, err = apply(t, false, "")
	if err != nil || changed != 0 || !strings.Contains(out, "1 hosts: nothing changed") {
		t.Fatalf("re-run after accepting the new key: %d changes, %v\n%s", changed, err, out)
	}
}
