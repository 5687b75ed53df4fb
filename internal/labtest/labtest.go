// Package labtest sets up emulated labs for integration tests and
// benchmarks: a per-run prefix and subnet, a fresh SSH key, inventories
// written for that subnet, and a Down registered before anything is made,
// so every namespace, process and mount goes away also when a test fails.
package labtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/lab"
	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/remote"
	"github.com/fhlab/provision/internal/state"
)

// TB is the part of testing.TB a Fixture needs; benchmarks outside `go
// test` pass their own.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Cleanup(func())
	Logf(format string, args ...any)
}

// Fixture is one emulated lab of one test.
type Fixture struct {
	Dir      string // inventories, key, state
	StateDir string
	KeyPath  string
	Net      netip.Prefix
	Lab      *lab.Lab
	// Swarm is the inventories' swarm section (YAML flow style); New sets
	// the default, tests may change it before Inventory.
	Swarm string
	nodes map[string]lab.Node
}

// Require skips the test when the lab cannot run here (not root, a tool
// missing), but fails it when CI is set: CI installs everything.
func Require(t TB) {
	t.Helper()
	if err := lab.Preflight(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set, so the emulated lab must run: %v", err)
		}
		t.Skipf("skipping: %v", err)
	}
}

// New makes a fixture in dir: a per-run prefix, a free /24 in the
// benchmarking range 198.18.0.0/15 (never a real network), an SSH key, and
// a lab whose Down is registered at once.
func New(t TB, dir string, logTo io.Writer) *Fixture {
	t.Helper()
	Require(t)
	var rnd [3]byte
	rand.Read(rnd[:])
	f := &Fixture{Dir: dir, StateDir: filepath.Join(dir, "state"), KeyPath: filepath.Join(dir, "id_ed25519"), nodes: map[string]lab.Node{},
		Swarm: "{defaultAddrPool: [10.128.0.0/12], defaultAddrPoolMaskLength: 20, managers: 3}"}
	if _, _, err := remote.EnsureKey(f.KeyPath); err != nil {
		t.Fatalf("ssh key: %v", err)
	}
	var gw netip.Addr
	f.Net, gw = freeSubnet(t, int(rnd[1])<<8|int(rnd[2]))
	pub, err := os.ReadFile(f.KeyPath + ".pub")
	if err != nil {
		t.Fatalf("ssh key: %v", err)
	}
	l, err := lab.New(lab.Config{
		Prefix:  "pls" + hex.EncodeToString(rnd[:])[:5],
		Network: f.Net, Gateway: gw,
		SSHUser: "provision", AuthorizedKeys: []string{strings.TrimSpace(string(pub))},
		Logger:      slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Concurrency: 16, ReadyTimeout: 2 * time.Minute,
	})
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	f.Lab = l
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := l.Down(ctx); err != nil {
			t.Logf("lab down %s: %v", l.Prefix(), err)
		}
	})
	return f
}

// freeSubnet picks a /24 of 198.18.0.0/15 that no interface uses.
func freeSubnet(t TB, seed int) (netip.Prefix, netip.Addr) {
	inUse := map[[2]byte]bool{}
	ifs, _ := net.Interfaces()
	for _, ifc := range ifs {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				inUse[[2]byte{ipn.IP.To4()[1], ipn.IP.To4()[2]}] = true
			}
		}
	}
	for i := 0; i < 512; i++ {
		v := (seed + i) % 512
		b1, b2 := byte(18+v/256), byte(v%256)
		if !inUse[[2]byte{b1, b2}] {
			return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, b1, b2, 0}), 24), netip.AddrFrom4([4]byte{198, b1, b2, 1})
		}
	}
	t.Fatalf("no free /24 in 198.18.0.0/15")
	return netip.Prefix{}, netip.Addr{}
}

// Addr is host number h of the fixture's subnet.
func (f *Fixture) Addr(h int) string {
	b := f.Net.Addr().As4()
	b[3] = byte(h)
	return netip.AddrFrom4(b).String()
}

// Inventory writes an inventory named name for this lab: the given
// proxmox vms and pis racks YAML (use {{ADDR n}} for host n of the subnet).
// Pool and mask are the swarm's.
func (f *Fixture) Inventory(t TB, name, vms, racks string) *inventory.Inventory {
	t.Helper()
	expand := func(s string) string {
		for {
			i := strings.Index(s, "{{ADDR ")
			if i < 0 {
				return s
			}
			j := strings.Index(s[i:], "}}")
			n, err := strconv.Atoi(strings.TrimSpace(s[i+7 : i+j]))
			if err != nil {
				t.Fatalf("bad {{ADDR}} in inventory: %v", err)
			}
			s = s[:i] + f.Addr(n) + s[i+j+2:]
		}
	}
	doc := fmt.Sprintf(`apiVersion: provision/v1
kind: Lab
metadata: {name: %s}
network: {cidr: %s, gateway: %s}
ssh: {user: provision, privateKeyFile: id_ed25519, authorizedKeyFiles: [id_ed25519.pub]}
swarm: %s
proxmox:
  apiURL: https://127.0.0.1:8006/api2/json
  template: debian-12-cloudinit
  nodes: [{name: pve1}, {name: pve2}, {name: pve3}]
  vms:
%s
pis:
  racks:
%s
`, strings.TrimSuffix(name, ".yaml"), f.Net, f.Addr(1), f.Swarm, expand(vms), expand(racks))
	path := filepath.Join(f.Dir, name)
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatalf("write inventory: %v", err)
	}
	inv, err := inventory.Load(path)
	if err != nil {
		t.Fatalf("load test inventory %s: %v\n%s", path, err, doc)
	}
	return inv
}

// Up brings up the lab nodes of these inventory nodes.
func (f *Fixture) Up(t TB, ctx context.Context, nodes []inventory.Node) {
	t.Helper()
	specs, err := lab.SpecsFromInventory(nodes, false)
	if err != nil {
		t.Fatalf("lab specs: %v", err)
	}
	up, err := f.Lab.Up(ctx, specs)
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	// The managers' daemons run at a higher priority (lab.NodeSpec.Manager).
	for _, n := range up {
		f.nodes[n.Name] = n
	}
}

func (f *Fixture) dockerdPID(t TB, name string) int {
	t.Helper()
	n, ok := f.nodes[name]
	if !ok {
		t.Fatalf("%s is not up", name)
	}
	data, err := os.ReadFile(filepath.Join(n.Dir, "dockerd.pid"))
	if err != nil {
		t.Fatalf("dockerd of %s: %v", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("dockerd of %s: pid file: %v", name, err)
	}
	return pid
}

// Env is a pipeline environment for inv whose state knows each emulated
// node's Docker socket, as `provision lab up` records it.
func (f *Fixture) Env(t TB, inv *inventory.Inventory, out, status io.Writer) *pipeline.Env {
	t.Helper()
	st, err := state.Load(f.StateDir, inv.Lab.Metadata.Name)
	if err != nil {
		t.Fatalf("state: %v", err)
	}
	for name, n := range f.nodes {
		st.Node(name).DockerSocket = n.DockerSocket
	}
	return &pipeline.Env{
		Inventory: inv, State: st, StateDir: f.StateDir, OutDir: filepath.Join(f.Dir, "seeds"),
		Concurrency: 32, Log: slog.New(slog.NewTextHandler(status, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Out: out, Status: pipeline.NewStatus(status, time.Now), Now: time.Now,
	}
}

// Node returns the lab's facts about a node that is up.
func (f *Fixture) Node(name string) (lab.Node, bool) {
	n, ok := f.nodes[name]
	return n, ok
}

// StopDockerd stops a node's dockerd (SIGTERM, then waits for it to go),
// as an admin's `systemctl stop docker` would.
func (f *Fixture) StopDockerd(t TB, name string) {
	t.Helper()
	pid := f.dockerdPID(t, name)
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("stop dockerd %s: %v", name, err)
	}
	for i := 0; i < 300; i++ {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("stop dockerd %s: still running after 30 s", name)
}

// StopSSHD stops a node's sshd (SIGTERM, then waits for it to go), as a
// node that is still booting or whose sshd is down would be; Up starts it
// again.
func (f *Fixture) StopSSHD(t TB, name string) {
	t.Helper()
	n, ok := f.nodes[name]
	if !ok {
		t.Fatalf("%s is not up", name)
	}
	data, err := os.ReadFile(filepath.Join(n.Dir, "sshd.pid"))
	if err != nil {
		t.Fatalf("sshd of %s: %v", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("sshd of %s: pid file: %v", name, err)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("stop sshd %s: %v", name, err)
	}
	for i := 0; i < 300; i++ {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("stop sshd %s: still running after 30 s", name)
}

// SetLink takes a node's link to the lab bridge down (a cut cable) or up
// again: the host side of its veth pair.
func (f *Fixture) SetLink(t TB, name string, up bool) {
	t.Helper()
	n, ok := f.nodes[name]
	if !ok {
		t.Fatalf("%s is not up", name)
	}
	state := "down"
	if up {
		state = "up"
	}
	if out, err := exec.Command("ip", "link", "set", n.Veth, state).CombinedOutput(); err != nil {
		t.Fatalf("link of %s %s: %v: %s", name, state, err, out)
	}
}
