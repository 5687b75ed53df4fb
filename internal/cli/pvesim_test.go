package cli

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/pvesim"
	"github.com/fhlab/provision/internal/remote"
	"github.com/fhlab/provision/internal/vms"
)

// inventoryDir is the repository's inventory/, found before any test
// changes directory.
var inventoryDir, _ = filepath.Abs("../../inventory")

// copyLocal copies inventory/local.yaml and its rack CSV into dir as
// local.yaml, with its key file inside dir (the original's
// ../.lab/id_ed25519 would point outside it), and applies edit.
func copyLocal(t *testing.T, dir string, edit func(string) string) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(inventoryDir, "local.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(src), "privateKeyFile: ../.lab/id_ed25519", "privateKeyFile: lab-key/id_ed25519", 1)
	if text == string(src) {
		t.Fatal("local.yaml's privateKeyFile moved: update copyLocal")
	}
	if err := os.MkdirAll(filepath.Join(dir, "racks"), 0o755); err != nil {
		t.Fatal(err)
	}
	csv, err := os.ReadFile(filepath.Join(inventoryDir, "racks", "local-p1.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "racks", "local-p1.csv"), csv, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "local.yaml")
	if err := os.WriteFile(path, []byte(edit(text)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// lockedBuffer is a bytes.Buffer safe for a command writing while the test
// reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startPVESim runs `provision pve-sim` until it says it serves (or exits),
// and stops it when the test ends. It returns what it printed so far.
func startPVESim(t *testing.T, args ...string) (stdout string, stop func() (code int, stderr string)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, append([]string{"pve-sim"}, args...), Streams{In: strings.NewReader(""), Out: &out, Err: &errb})
	}()
	var once sync.Once
	var code int
	stop = func() (int, string) {
		once.Do(func() { cancel(); code = <-done })
		return code, errb.String()
	}
	t.Cleanup(func() { stop() })
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if strings.Contains(out.String(), "Ctrl-C stops it.") {
			return out.String(), stop
		}
		select {
		case code := <-done:
			done <- code
			return out.String(), stop
		default:
		}
	}
	t.Fatalf("pve-sim did not come up; stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	return "", nil
}

// TestPVESimHintsAreAbsolute: every path pve-sim prints works from another
// directory and as proxmox.caFile of an inventory elsewhere (caFile is
// relative to the inventory's directory, not to where pve-sim ran).
func TestPVESimHintsAreAbsolute(t *testing.T) {
	t.Setenv("PM_API_TOKEN_ID", "")
	t.Setenv("PM_API_TOKEN_SECRET", "")
	work := t.TempDir()
	copyLocal(t, filepath.Join(work, "inv"), func(s string) string { return s })
	t.Chdir(work)
	out, stop := startPVESim(t, "-i", "inv/local.yaml", "--state-dir", "state", "--state", "sim.json", "--listen", "127.0.0.1:0")
	if code, errs := stop(); code != 0 {
		t.Fatalf("pve-sim exited %d:\n%s\n%s", code, out, errs)
	}
	for _, re := range []string{
		`token provision@pve!pvesim: from (\S+)\n`,
		`CA certificate: (\S+) \(set proxmox.caFile`,
		`state: (\S+) \(saved on exit\)`,
		`use it: set -a; \. (\S+); set \+a;`,
		`provision preflight -i (\S+)\n`,
	} {
		m := regexp.MustCompile(re).FindStringSubmatch(out)
		if m == nil {
			t.Errorf("no %s in:\n%s", re, out)
			continue
		}
		if !filepath.IsAbs(m[1]) {
			t.Errorf("%s: %q is not absolute", re, m[1])
		} else if _, err := os.Stat(m[1]); err != nil {
			t.Errorf("%s: %v", re, err)
		}
	}
	// The printed CA file, pasted into an inventory in another directory.
	ca := regexp.MustCompile(`CA certificate: (\S+) `).FindStringSubmatch(out)
	if ca == nil {
		t.FailNow()
	}
	other := copyLocal(t, t.TempDir(), func(s string) string {
		return strings.Replace(s, "insecure: true", "caFile: "+ca[1], 1)
	})
	inv, err := inventory.Load(other)
	if err != nil {
		t.Fatal(err)
	}
	if got := inventory.ResolvePath(inv.Dir, inv.Lab.Proxmox.CAFile); got != ca[1] {
		t.Errorf("proxmox.caFile %s resolves to %s", ca[1], got)
	}
}

// freePorts returns n TCP ports that were free on 127.0.0.1 a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// withSSHPorts gives local.yaml's three Proxmox hosts the given ports.
func withSSHPorts(t *testing.T, text string, ports []int) string {
	t.Helper()
	for i, p := range ports {
		old := fmt.Sprintf("sshPort: %d}", 2221+i)
		if !strings.Contains(text, old) {
			t.Fatalf("local.yaml has no %q", old)
		}
		text = strings.Replace(text, old, fmt.Sprintf("sshPort: %d}", p), 1)
	}
	return text
}

// sftpRoot makes a directory sshd accepts as the parent of chroots
// (root-owned, under /run, not /tmp) and removes it when the test ends.
func sftpRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/run", "provision-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// requireSSHD skips without a real sshd or root, and fails under CI.
func requireSSHD(t *testing.T) {
	t.Helper()
	var why string
	if _, err := os.Stat(pvesim.DefaultSSHDPath); err != nil {
		why = pvesim.DefaultSSHDPath + " not found (install openssh-server: make deps)"
	} else if os.Geteuid() != 0 {
		why = "sshd needs root (privilege separation, chroot)"
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set but a real sshd cannot run: %s", why)
	}
	t.Skipf("skipping: %s", why)
}

// TestPVESimSFTP: `pve-sim --sftp` serves every simulated host's SFTP at
// the inventory's address and sshPort with a real sshd; an upload as vms
// apply makes it lands in that host's directory.
func TestPVESimSFTP(t *testing.T) {
	requireSSHD(t)
	t.Setenv("PM_API_TOKEN_ID", "")
	t.Setenv("PM_API_TOKEN_SECRET", "")
	dir := t.TempDir()
	ports := freePorts(t, 3)
	invPath := copyLocal(t, dir, func(s string) string { return withSSHPorts(t, s, ports) })
	root := sftpRoot(t)
	out, stop := startPVESim(t, "-i", invPath, "--state-dir", filepath.Join(dir, "state"), "--listen", "127.0.0.1:0",
		"--sftp", "--sftp-root", root)
	for i, n := range []string{"pve1", "pve2", "pve3"} {
		want := fmt.Sprintf("SFTP for %s: 127.0.0.1:%d as root, files in %s, host key SHA256:", n, ports[i], filepath.Join(root, n))
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	inv, err := inventory.Load(invPath)
	if err != nil {
		t.Fatal(err)
	}
	// createKey: pve-sim made the inventory's key; it logs in.
	signer, err := remote.LoadSigner(inv.PrivateKeyPath())
	if err != nil {
		t.Fatal(err)
	}
	dial := vms.SSHDialer("root", remote.DefaultPort, remote.Config{Signer: signer,
		KnownHosts: remote.NewKnownHosts(filepath.Join(dir, "known_hosts")), Retry: remote.RetryPolicy{MaxAttempts: 1}})
	up, closeFn, err := dial(t.Context(), inv.Lab.Proxmox.Nodes[1])
	if err != nil {
		t.Fatalf("dial pve2's SFTP: %v", err)
	}
	res, err := up.Upload(t.Context(), inv.Lab.Proxmox.SnippetsDir, []remote.File{{Name: "t-user.yaml", Content: []byte("#cloud-config\n")}}, remote.UploadOptions{})
	closeFn()
	if err != nil || len(res.Written) != 1 {
		t.Fatalf("upload: %+v %v", res, err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "pve2", "var/lib/vz/snippets/t-user.yaml")); err != nil || string(b) != "#cloud-config\n" {
		t.Errorf("snippet in pve2's directory: %q %v", b, err)
	}
	if code, errs := stop(); code != 0 {
		t.Errorf("pve-sim exited %d: %s", code, errs)
	}
	// Stopped with pve-sim: nothing listens there any more.
	if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ports[1])); err == nil {
		c.Close()
		t.Errorf("pve2's sshd still listens after pve-sim stopped")
	}
}

// TestPVESimSFTPRefuses: hosts --sftp cannot serve are refused before
// anything starts, naming the host and the fix.
func TestPVESimSFTPRefuses(t *testing.T) {
	t.Setenv("PM_API_TOKEN_ID", "")
	t.Setenv("PM_API_TOKEN_SECRET", "")
	for _, tc := range []struct {
		name string
		edit func(string) string
		want string
	}{
		{"shared port", func(s string) string { return strings.Replace(s, "sshPort: 2222", "sshPort: 2221", 1) },
			"proxmox.nodes[1] (pve2) and pve1 are both at 127.0.0.1:2221: give each proxmox.nodes[] entry its own sshPort"},
		{"not loopback", func(s string) string {
			return strings.Replace(s, "{name: pve3, address: 127.0.0.1,", "{name: pve3, address: 198.51.100.3,", 1)
		}, `proxmox.nodes[2] (pve3) has address "198.51.100.3": the simulated hosts' sshd runs on this machine`},
	} {
		dir := t.TempDir()
		inv := copyLocal(t, dir, tc.edit)
		code, _, errs := run(t, "pve-sim", "-i", inv, "--state-dir", filepath.Join(dir, "state"), "--listen", "127.0.0.1:0", "--sftp")
		if code != 2 || !strings.Contains(errs, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want 2 and %q", tc.name, code, errs, tc.want)
		}
	}
}
