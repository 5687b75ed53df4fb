// Command hosts benchmarks `provision hosts apply` against the field's way
// of preparing a "bring your own" host, an Ansible play with
// geerlingguy.docker-style tasks (play.yml: apt source, apt install, copy
// the tuning files, restart on change), in one run on one emulated lab:
//
//   - one lab bridge (labtest, as the integration tests make it) and one
//     lab mirror built for the run and served on the bridge: the packages
//     the hosts need (hosts.Packages) plus python3 and python3-apt for the
//     play's bootstrap, from .deb files on this machine and installed
//     packages repacked (internal/mirror, as TestIntegrationHosts builds
//     it);
//   - provision: a fresh emulated host (internal/hosts/hostlab: its own
//     Debian root from the same cached tar, booted by systemd-nspawn on the
//     bridge, no route out), `provision hosts apply` (the binary of this
//     tree) twice: the time of each and the items each changed, from its
//     summary line;
//   - play: another fresh host from the same root, `ansible-playbook
//     play.yml` twice over SSH as root with the same key, host keys checked
//     and trusted on first use into a known_hosts file of the run's (as
//     provision does into <state-dir>/known_hosts): the time of each and
//     changed= of its PLAY RECAP. The play's first task installs python3
//     from the mirror with ansible.builtin.raw (the host has none, and
//     every other module needs it); its time is part of the play's.
//
// Both hosts have the root's Debian sources (deb.debian.org) removed before
// boot: the lab is air-gapped, and a source that cannot be reached fails
// the play's apt cache update. The play's files/ are written into the
// run's work directory from the bytes provision writes (hosts.Desired:
// render.HostFiles and the mirror's source and key). Needs root, the
// emulated host's root (scripts/install-deps.sh), Ansible with the
// ansible.posix collection (Debian's ansible package), and python3 and
// python3-apt installed here (they are repacked into the mirror).
//
//	go run ./bench/hosts [-keep]
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fhlab/provision/internal/hosts"
	"github.com/fhlab/provision/internal/hosts/hostlab"
	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/labtest"
	"github.com/fhlab/provision/internal/mirror"
	"github.com/fhlab/provision/internal/render"
	"github.com/fhlab/provision/templates"
)

// repackCache keeps the packages dpkg-repack made between runs, shared
// with TestIntegrationHosts (a cache: repacking is slow).
const repackCache = "/var/cache/provision/test-repacked"

// debDirs hold .deb files of packages not installed here (chrony,
// ipvsadm: scripts/install-deps.sh downloads them).
var debDirs = []string{"/var/cache/provision/debs", "/var/cache/apt/archives"}

// bootstrapPackages are what the play's raw task installs, added to the
// bench's mirror only.
var bootstrapPackages = []string{"python3", "python3-apt"}

func main() {
	keep := flag.Bool("keep", false, "keep the work directory (inventories, outputs, the play's files)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tb := &labtest.Outside{}
	err := tb.Run(func() error { return run(ctx, tb, *keep) })
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("interrupted; the lab, the hosts and the work directory are removed (%w)", err)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench/hosts: %v\n", err)
		os.Exit(1)
	}
}

// missing names what the bench needs and does not find, with what to
// install, or "".
func missing(ctx context.Context) string {
	var why []string
	if os.Geteuid() != 0 {
		why = append(why, "root (network namespaces, systemd-nspawn): run it with sudo")
	}
	if m := hostlab.Missing(); m != "" {
		why = append(why, m)
	}
	for tool, pkg := range map[string]string{"ansible-playbook": "ansible", "dpkg-repack": "dpkg-repack", "dpkg-deb": "dpkg", "ssh": "openssh-client"} {
		if _, err := exec.LookPath(tool); err != nil {
			why = append(why, fmt.Sprintf("%s (apt-get install %s, or scripts/install-deps.sh)", tool, pkg))
		}
	}
	if _, err := exec.LookPath("ansible-doc"); err == nil {
		if err := exec.CommandContext(ctx, "ansible-doc", "-t", "callback", "ansible.posix.profile_tasks").Run(); err != nil {
			why = append(why, "the ansible.posix collection (its profile_tasks callback times the play's tasks): apt-get install ansible")
		}
	}
	for _, p := range bootstrapPackages {
		out, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f", "${Status}", p).Output()
		if err != nil || !strings.HasSuffix(string(out), " installed") {
			why = append(why, fmt.Sprintf("%s installed on this machine (the bench repacks it into its mirror for the play's bootstrap): apt-get install %s", p, p))
		}
	}
	return strings.Join(why, "; ")
}

// contender is one side's two runs.
type contender struct {
	first, again      time.Duration
	changed, changed2 int
	note              string
}

func run(ctx context.Context, tb *labtest.Outside, keep bool) error {
	if why := missing(ctx); why != "" {
		return fmt.Errorf("cannot run here, missing: %s", why)
	}
	play, err := os.ReadFile("bench/hosts/play.yml")
	if err != nil {
		return fmt.Errorf("read the play (run from the repository's root): %w", err)
	}
	began := time.Now()
	dir, err := os.MkdirTemp("", "provision-bench-hosts-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Printf("work directory: %s\n", dir)
	} else {
		tb.Cleanup(func() { os.RemoveAll(dir) }) // the last cleanup
	}
	bin := filepath.Join(dir, "provision")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/provision")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build provision (run from the repository's root): %w", err)
	}
	load0 := loadAvg()

	// The lab: a bridge of the run's own (prefix, /24 of 198.18.0.0/15),
	// no nodes of its own: the hosts are the only machines on it.
	f := labtest.New(tb, dir, io.Discard)
	f.Up(tb, ctx, nil)
	gw := f.Addr(1)
	mirrorURL := fmt.Sprintf("http://%s:8081/", gw)
	invPath := filepath.Join(dir, "lab.yaml")
	inv, err := writeInventory(invPath, f, mirrorURL)
	if err != nil {
		return err
	}
	var hostP inventory.Node
	for _, n := range inv.Nodes {
		if n.Kind == inventory.KindHost {
			hostP = n
		}
	}
	hostA := inventory.Node{Name: f.Lab.Prefix() + "-a", IP: f.Addr(22), SSHUser: "root", Kind: inventory.KindHost}

	// The mirror, for both hosts.
	start := time.Now()
	arch, err := exec.CommandContext(ctx, "dpkg", "--print-architecture").Output()
	if err != nil {
		return fmt.Errorf("dpkg --print-architecture: %w", err)
	}
	mirrorDir := filepath.Join(dir, "mirror")
	sum, err := mirror.Build(ctx, mirror.Config{
		Dir: mirrorDir, Lab: inv.Lab.Metadata.Name,
		Packages: append(hosts.Packages(&inv.Lab.HostTuning), bootstrapPackages...),
		Archs:    []string{hostP.Arch}, DebDirs: debDirs, FromInstalled: true, NativeArch: strings.TrimSpace(string(arch)),
		RepackCache: repackCache,
	})
	if err != nil {
		return fmt.Errorf("mirror build: %w", err)
	}
	srv, err := mirror.Listen(mirrorDir, net.JoinHostPort(gw, "8081"), nil)
	if err != nil {
		return err
	}
	sctx, stopServe := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx) }()
	tb.Cleanup(func() { stopServe(); <-served })
	fmt.Printf("bench/hosts: lab %s on %s, mirror %s: %d packages (the hosts' and %s for the play's bootstrap) built in %s (not part of the figures)\n",
		f.Lab.Prefix(), f.Net, mirrorURL, len(sum.Packages[hostP.Arch]), strings.Join(bootstrapPackages, ", "), time.Since(start).Round(100*time.Millisecond))

	// The play's files: the bytes provision writes.
	key, err := os.ReadFile(filepath.Join(mirrorDir, mirror.RepoDir, mirror.PublicKey))
	if err != nil {
		return err
	}
	r, err := render.New(templates.FS)
	if err != nil {
		return err
	}
	want, err := hosts.Desired(r, inv, &hosts.Source{URL: mirrorURL, Suite: mirror.Suite, Key: key})
	if err != nil {
		return err
	}
	playDir := filepath.Join(dir, "play")
	for _, file := range want.Files {
		if !bytes.Contains(play, []byte(file.Path)) {
			return fmt.Errorf("bench/hosts/play.yml does not copy %s, which provision writes: add it to the play", file.Path)
		}
		p := filepath.Join(playDir, "files", file.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, file.Content, file.Mode.Perm()); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(playDir, "play.yml"), play, 0o644); err != nil {
		return err
	}

	// Both hosts: the login as provision's bootstrap script makes it, and
	// no Debian source but the mirror (air-gapped).
	keys := inv.Lab.SSH.AuthorizedKeys
	boot := func(n inventory.Node) (stopHost func() error, err error) {
		h, err := hostlab.Boot(ctx, hostlab.Config{
			Prefix: f.Lab.Prefix(), Name: n.Name, IP: n.IP + "/24", Bridge: f.Lab.Bridge(),
			RootTar: hostlab.RootTar(), Dir: filepath.Join(dir, n.Name), Console: filepath.Join(dir, n.Name+".console"),
			Bootstrap: hosts.Bootstrap(n, keys) + "rm -f /etc/apt/sources.list\n",
		})
		stopHost = sync.OnceValue(h.Stop)
		tb.Cleanup(func() {
			if err := stopHost(); err != nil {
				fmt.Fprintf(os.Stderr, "bench/hosts: stop the emulated host %s: %v\n", n.Name, err)
			}
		})
		if err != nil {
			console, _ := os.ReadFile(filepath.Join(dir, n.Name+".console"))
			return stopHost, fmt.Errorf("%w\n%s", err, console)
		}
		return stopHost, nil
	}

	// provision.
	stopP, err := boot(hostP)
	if err != nil {
		return err
	}
	var prov contender
	apply := func(log string) (time.Duration, int, error) {
		cmd := exec.CommandContext(ctx, bin, "hosts", "apply", "-i", invPath, "--state-dir", f.StateDir)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.WaitDelay = 10 * time.Second
		t0 := time.Now()
		err := cmd.Run()
		took := time.Since(t0)
		os.WriteFile(filepath.Join(dir, log), out.Bytes(), 0o644)
		if err != nil {
			return took, 0, fmt.Errorf("provision hosts apply: %w\n%s", err, out.String())
		}
		n, err := provisionChanged(out.String())
		return took, n, err
	}
	if prov.first, prov.changed, err = apply("provision-1.log"); err != nil {
		return err
	}
	if prov.again, prov.changed2, err = apply("provision-2.log"); err != nil {
		return fmt.Errorf("re-run: %w", err)
	}
	if err := stopP(); err != nil {
		return fmt.Errorf("stop %s: %v", hostP.Name, err)
	}

	// The play.
	if _, err := boot(hostA); err != nil {
		return err
	}
	ans, err := newAnsible(ctx, tb, dir, playDir, hostA, f.KeyPath)
	if err != nil {
		return err
	}
	var pl contender
	var p1, p2 playRun
	if p1, err = ans.run(ctx, filepath.Join(dir, "ansible-1.log")); err != nil {
		return err
	}
	if p2, err = ans.run(ctx, filepath.Join(dir, "ansible-2.log")); err != nil {
		return fmt.Errorf("re-run: %w", err)
	}
	pl.first, pl.changed, pl.again, pl.changed2 = p1.took, p1.changed, p2.took, p2.changed
	load1 := loadAvg()

	// The table.
	fmt.Printf("two fresh emulated hosts from %s (systemd-nspawn, own netns on the lab bridge, no route out), one per contender; load average %s at the start, %s at the end; 2 cores\n",
		hostlab.RootTar(), load0, load1)
	fmt.Printf("%-44s %12s %12s %16s %16s\n", "", "first run", "re-run", "changed (first)", "changed (re-run)")
	fmt.Printf("%-44s %12s %12s %16d %16d\n", "(p) provision hosts apply", secs(prov.first), secs(prov.again), prov.changed, prov.changed2)
	fmt.Printf("%-44s %12s %12s %16d %16d\n", "(a) ansible-playbook play.yml (+ bootstrap)", secs(pl.first), secs(pl.again), pl.changed, pl.changed2)
	fmt.Printf("%-44s %11.2fx %11.2fx\n", "ratio play/provision", pl.first.Seconds()/prov.first.Seconds(), pl.again.Seconds()/prov.again.Seconds())
	fmt.Printf("    the play's first run includes its raw bootstrap of python3 and python3-apt from the mirror: %s (profile_tasks); without it %s, ratio %.2fx\n",
		secs(p1.bootstrap), secs(p1.took-p1.bootstrap), (p1.took-p1.bootstrap).Seconds()/prov.first.Seconds())
	fmt.Printf("    provision's changes are items (files, packages, sysctls, services); the play's are changed= of its PLAY RECAP (tasks and handlers)\n")
	fmt.Printf("    the play's slowest tasks, first run: %s\n", strings.Join(first(p1.slowest, 3), "; "))
	fmt.Printf("    the play's slowest tasks, re-run: %s\n", strings.Join(first(p2.slowest, 3), "; "))
	if len(p2.changedTasks) > 0 {
		fmt.Printf("    the play's re-run changed: %s\n", strings.Join(p2.changedTasks, "; "))
		if strings.Contains(strings.Join(p2.changedTasks, " "), "chrony.service") {
			fmt.Printf("    (chrony: systemd skips it in the emulated host, which has no CAP_SYS_TIME (ConditionCapability), so it stays inactive and\n" +
				"    the play's state=started starts it again on every run; on a real host it would be running and report ok; provision counts it as enabled)\n")
		}
	}
	faster := pl.first > prov.first && pl.again > prov.again
	zero := prov.changed2 == 0
	fmt.Printf("goal: faster than the play (first run and re-run): %s; zero changes on a re-run: %s (provision %d, the play %d)\n",
		met(faster), met(zero), prov.changed2, pl.changed2)
	fmt.Printf("bench took %s\n", time.Since(began).Round(time.Second))
	return nil
}

// writeInventory writes the bench's inventory: the lab's network and key,
// a manager Pi (the swarm section needs one; it is never brought up: hosts
// apply does not touch it), one host for provision, the mirror.
func writeInventory(path string, f *labtest.Fixture, mirrorURL string) (*inventory.Inventory, error) {
	name := filepath.Base(filepath.Dir(path))
	name = "bh" + strings.TrimPrefix(name, "provision-bench-hosts-")
	doc := fmt.Sprintf(`apiVersion: provision/v1
kind: Lab
metadata: {name: %s}
network: {cidr: %s, gateway: %s}
ssh: {user: provision, privateKeyFile: id_ed25519, authorizedKeyFiles: [id_ed25519.pub]}
swarm: {defaultAddrPool: [10.128.0.0/12], defaultAddrPoolMaskLength: 20, managers: 1, ingress: {enabled: false}}
pis:
  racks:
    - {name: m, count: 1, role: manager, boot: sd, ipStart: %s}
hosts:
  - {name: %s-p, address: %s, sshUser: root}
mirror: {url: %q, dir: mirror}
`, strings.ToLower(name), f.Net, f.Addr(1), f.Addr(11), f.Lab.Prefix(), f.Addr(21), mirrorURL)
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		return nil, err
	}
	inv, err := inventory.Load(path)
	if err != nil {
		return nil, fmt.Errorf("the bench's inventory %s: %w\n%s", path, err, doc)
	}
	return inv, nil
}

var provisionSummary = regexp.MustCompile(`(?m)^\S*\s*1 hosts: (nothing changed|changed (\d+) items on 1, 0 unchanged, 0 failed or refused)`)

// provisionChanged is the number of items `provision hosts apply` says it
// changed.
func provisionChanged(out string) (int, error) {
	m := provisionSummary.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no summary line in provision's output:\n%s", out)
	}
	if m[2] == "" {
		return 0, nil
	}
	return strconv.Atoi(m[2])
}

// ansible runs the play against one host, with a configuration of the
// run's own (nothing read from /etc/ansible or ~/.ansible).
type ansible struct {
	dir, play string
	env       []string
	host      string
}

func newAnsible(ctx context.Context, tb *labtest.Outside, dir, playDir string, n inventory.Node, key string) (*ansible, error) {
	a := &ansible{dir: filepath.Join(dir, "ansible"), play: filepath.Join(playDir, "play.yml"), host: n.Name}
	cp := filepath.Join(a.dir, "cp")
	for _, d := range []string{a.dir, cp, filepath.Join(a.dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	known := filepath.Join(a.dir, "known_hosts")
	if err := os.WriteFile(known, nil, 0o600); err != nil {
		return nil, err
	}
	// Ansible's defaults (ControlPersist, no pipelining), host keys
	// checked and trusted on first use into the run's known_hosts.
	cfg := fmt.Sprintf(`[defaults]
host_key_checking = True
inventory = %[1]s/hosts.ini
local_tmp = %[1]s/tmp
retry_files_enabled = False
nocolor = True
callbacks_enabled = ansible.posix.profile_tasks

[ssh_connection]
control_path_dir = %[2]s
ssh_args = -C -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=%[3]s -o StrictHostKeyChecking=accept-new
`, a.dir, cp, known)
	ini := fmt.Sprintf("[byo]\n%s ansible_host=%s ansible_user=%s ansible_ssh_private_key_file=%s ansible_python_interpreter=/usr/bin/python3\n", n.Name, n.IP, n.SSHUser, key)
	if err := os.WriteFile(filepath.Join(a.dir, "ansible.cfg"), []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(a.dir, "hosts.ini"), []byte(ini), 0o644); err != nil {
		return nil, err
	}
	a.env = append(os.Environ(), "ANSIBLE_CONFIG="+filepath.Join(a.dir, "ansible.cfg"), "ANSIBLE_HOME="+a.dir, "ANSIBLE_FORCE_COLOR=0")
	// The SSH masters ControlPersist leaves behind end with the run.
	tb.Cleanup(func() {
		socks, _ := filepath.Glob(filepath.Join(cp, "*"))
		for _, s := range socks {
			exec.Command("ssh", "-o", "ControlPath="+s, "-O", "exit", n.IP).Run()
		}
	})
	return a, nil
}

// playRun is one ansible-playbook run.
type playRun struct {
	took, bootstrap time.Duration
	changed         int
	changedTasks    []string
	slowest         []string // profile_tasks' summary, slowest first
}

var (
	recapLine   = regexp.MustCompile(`(?m)^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)`)
	taskLine    = regexp.MustCompile(`^(?:TASK|RUNNING HANDLER) \[(.*)\]`)
	profileLine = regexp.MustCompile(`^(.*?) -{3,} (\d+\.\d+)s$`)
)

func (a *ansible) run(ctx context.Context, log string) (playRun, error) {
	var r playRun
	cmd := exec.CommandContext(ctx, "ansible-playbook", a.play)
	cmd.Dir = a.dir
	cmd.Env = a.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Ansible forks workers: Ctrl-C ends the whole group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	t0 := time.Now()
	err := cmd.Run()
	r.took = time.Since(t0)
	os.WriteFile(log, out.Bytes(), 0o644)
	if err != nil {
		return r, fmt.Errorf("ansible-playbook %s: %w\n%s", a.play, err, out.String())
	}
	m := recapLine.FindStringSubmatch(out.String())
	if m == nil || m[1] != a.host {
		return r, fmt.Errorf("no PLAY RECAP line for %s in ansible-playbook's output:\n%s", a.host, out.String())
	}
	if m[4] != "0" || m[5] != "0" {
		return r, fmt.Errorf("ansible-playbook: %s unreachable=%s failed=%s:\n%s", a.host, m[4], m[5], out.String())
	}
	r.changed, _ = strconv.Atoi(m[3])
	task := ""
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		line := sc.Text()
		if t := taskLine.FindStringSubmatch(line); t != nil {
			task = t[1]
		}
		if strings.HasPrefix(line, "changed: ["+a.host+"]") {
			item := ""
			if _, it, ok := strings.Cut(line, "(item="); ok {
				item = " (" + strings.TrimSuffix(it, ")")
				if !strings.HasSuffix(item, ")") {
					item += ")"
				}
			}
			r.changedTasks = append(r.changedTasks, task+item)
		}
		if p := profileLine.FindStringSubmatch(line); p != nil {
			r.slowest = append(r.slowest, strings.TrimSpace(p[1])+" "+p[2]+" s")
			if strings.HasPrefix(p[1], "bootstrap python3") {
				s, _ := strconv.ParseFloat(p[2], 64)
				r.bootstrap = time.Duration(s * float64(time.Second))
			}
		}
	}
	if r.bootstrap == 0 {
		return r, errors.New("no time for the bootstrap task in profile_tasks' summary:\n" + out.String())
	}
	return r, nil
}

func first(s []string, n int) []string { return s[:min(n, len(s))] }

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func loadAvg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}
