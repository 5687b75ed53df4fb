package lab

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/fhlab/provision/internal/inventory"
)

// requireLab skips (locally) or fails (with CI set) when the lab cannot
// run here: not root, or a program missing.
func requireLab(t *testing.T) {
	t.Helper()
	if err := Preflight(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set, so the emulated lab must run: %v", err)
		}
		t.Skipf("skipping: %v", err)
	}
}

// testKey makes an ed25519 key in the test's temp dir (0600) and returns
// its signer and authorized_keys line.
func testKey(t *testing.T) (ssh.Signer, string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "lab test")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(t.TempDir(), "id_ed25519"), pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return signer, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
}

// testLab is a lab for one test: the nodes of inventory/local.yaml (the
// first n), its SSH user, a per-run prefix and a per-run subnet in the
// benchmarking range 198.18.0.0/15, so tests never meet a lab that is up
// (the inventory's 198.51.100.0/24) or each other. Down and the check that
// nothing is left are registered before anything is made.
type testLab struct {
	*Lab
	specs  []NodeSpec
	signer ssh.Signer
	user   string
}

func newTestLab(t *testing.T, n int) *testLab {
	t.Helper()
	requireLab(t)
	inv, err := inventory.Load("../../inventory/local.yaml")
	if err != nil {
		t.Fatalf("load inventory: %v", err)
	}
	cfg, err := ConfigFromInventory(inv)
	if err != nil {
		t.Fatal(err)
	}
	specs, err := SpecsFromInventory(inv.Nodes, false)
	if err != nil {
		t.Fatal(err)
	}
	if n > len(specs) {
		specs = append(specs, extraSpecs(specs, n-len(specs))...)
	}
	specs = specs[:n]

	var rnd [3]byte
	rand.Read(rnd[:])
	cfg.Prefix = "plt" + hex.EncodeToString(rnd[:])[:5]
	cfg.Network, cfg.Gateway = freeSubnet(t, rnd[2])
	for i := range specs {
		host := specs[i].IP.As4()[3]
		b := cfg.Network.Addr().As4()
		b[3] = host
		specs[i].IP = netip.AddrFrom4(b)
	}
	signer, pub := testKey(t)
	cfg.AuthorizedKeys = []string{pub}
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.ReadyTimeout = 90 * time.Second
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, userErr := user.Lookup(cfg.SSHUser)
	userExisted := userErr == nil
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := l.Down(ctx); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		assertNothingLeft(t, l, cfg.SSHUser, userExisted)
	})
	return &testLab{Lab: l, specs: specs, signer: signer, user: cfg.SSHUser}
}

// extraSpecs makes more nodes than the inventory has, for scale runs.
func extraSpecs(have []NodeSpec, n int) []NodeSpec {
	used := map[byte]bool{1: true, 0: true, 255: true}
	for _, s := range have {
		used[s.IP.As4()[3]] = true
	}
	var out []NodeSpec
	for host := 2; host < 255 && len(out) < n; host++ {
		if !used[byte(host)] {
			out = append(out, NodeSpec{Name: fmt.Sprintf("x-%d", host), IP: netip.AddrFrom4([4]byte{198, 51, 100, byte(host)})})
		}
	}
	return out
}

// freeSubnet picks a /24 in 198.18.0.0/15 that no interface here uses.
func freeSubnet(t *testing.T, seed byte) (netip.Prefix, netip.Addr) {
	t.Helper()
	inUse := map[[2]byte]bool{}
	ifs, _ := net.Interfaces()
	for _, ifc := range ifs {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				ip := ipn.IP.To4()
				inUse[[2]byte{ip[1], ip[2]}] = true
			}
		}
	}
	for i := 0; i < 512; i++ {
		v := (int(seed) + i) % 512
		b1, b2 := byte(18+v/256), byte(v%256)
		if !inUse[[2]byte{b1, b2}] {
			return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, b1, b2, 0}), 24), netip.AddrFrom4([4]byte{198, b1, b2, 1})
		}
	}
	t.Fatal("no free /24 in 198.18.0.0/15")
	return netip.Prefix{}, netip.Addr{}
}

// assertNothingLeft checks, the way an admin would, that Down removed
// everything: namespaces, links, processes, mounts, cgroups, the group,
// the user (unless it was there before or another lab still uses it) and
// the state directory.
func assertNothingLeft(t *testing.T, l *Lab, userName string, userExisted bool) {
	t.Helper()
	for _, left := range l.Leftovers() {
		t.Errorf("left: %s", left)
	}
	// Leftovers' own checks, done here the way a person would.
	prefix, dir := l.Prefix(), l.StateDir()
	if out := sh(t, "ip", "netns", "list"); strings.Contains(out, prefix+"-") {
		t.Errorf("namespaces left:\n%s", out)
	}
	if out, _ := exec.Command("pgrep", "-af", dir+"/").CombinedOutput(); len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("processes left:\n%s", out)
	}
	if out, err := exec.Command("getent", "passwd", userName).CombinedOutput(); err == nil && !userExisted && len(l.otherManifests()) == 0 {
		t.Errorf("user %s left: %s", userName, out)
	}
}

// sh runs a command and returns its output, failing the test on error.
func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// sshRun logs in to a node as the lab user, checking the host key against
// the one the lab reports, and runs a command.
func sshRun(t *testing.T, tl *testLab, n Node, cmd string) string {
	t.Helper()
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(n.HostKey))
	if err != nil {
		t.Fatalf("%s host key: %v", n.Name, err)
	}
	cfg := &ssh.ClientConfig{
		User: tl.user,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(tl.signer)},
		HostKeyCallback: func(host string, remote net.Addr, key ssh.PublicKey) error {
			if ssh.FingerprintSHA256(key) != n.HostKeyFingerprint {
				return fmt.Errorf("host key %s, want %s", ssh.FingerprintSHA256(key), n.HostKeyFingerprint)
			}
			return ssh.FixedHostKey(hostKey)(host, remote, key)
		},
		Timeout: 10 * time.Second,
	}
	c, err := ssh.Dial("tcp", n.SSHAddr, cfg)
	if err != nil {
		t.Fatalf("ssh %s@%s: %v", tl.user, n.SSHAddr, err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.CombinedOutput(cmd)
	if err != nil {
		t.Fatalf("ssh %s: %s: %v\n%s", n.Name, cmd, err, out)
	}
	return string(out)
}

// labMemory sums the resident (RSS) and proportional (PSS) memory of the
// lab's processes, in KiB.
func labMemory(t *testing.T, l *Lab, nodes []Node) (rss, pss int, procs int) {
	t.Helper()
	nets := map[string]bool{}
	for _, n := range nodes {
		nets[nsID("net", n.NetnsPath())] = true
	}
	ps, err := listProcs()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if !strings.Contains(p.cmdline, l.StateDir()+"/") && !nets[p.net] {
			continue
		}
		f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", p.pid))
		if err != nil {
			continue
		}
		procs++
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 2 {
				continue
			}
			v, _ := strconv.Atoi(fields[1])
			switch fields[0] {
			case "Rss:":
				rss += v
			case "Pss:":
				pss += v
			}
		}
		f.Close()
	}
	return rss, pss, procs
}

// memAvailable is MemAvailable from /proc/meminfo, in KiB.
func memAvailable() int {
	data, _ := os.ReadFile("/proc/meminfo")
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemAvailable:" {
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	return 0
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
