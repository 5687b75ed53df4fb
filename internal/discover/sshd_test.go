//go:build linux

package discover

import (
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/testtool"
)

// needTool finds a program the test needs: missing, the test skips, or
// fails under CI=true.
func needTool(t *testing.T, name string, more ...string) string {
	t.Helper()
	for _, p := range append([]string{name}, more...) {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	testtool.Missing(t, "%s is not installed (scripts/install-deps.sh installs it)", name)
	return ""
}

// startSSHD runs a real sshd on addr:22 with a throwaway host key and
// nothing read from /etc/ssh.
func startSSHD(t *testing.T, addr netip.Addr) {
	t.Helper()
	sshd := needTool(t, "sshd", "/usr/sbin/sshd")
	keygen := needTool(t, "ssh-keygen")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("sshd on port 22 needs root")
		}
		t.Skip("sshd on port 22 needs root")
	}
	if _, err := os.Stat("/run/sshd"); os.IsNotExist(err) {
		// sshd's privilege separation directory, as Debian's unit makes it.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Rmdir("/run/sshd") })
	}
	dir := t.TempDir()
	key := filepath.Join(dir, "host_ed25519")
	if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	cfg := filepath.Join(dir, "sshd_config")
	conf := strings.Join([]string{
		"ListenAddress " + netip.AddrPortFrom(addr, 22).String(),
		"HostKey " + key,
		"PidFile " + filepath.Join(dir, "sshd.pid"),
		"UsePAM no",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"AuthorizedKeysFile none",
		"UseDNS no",
	}, "\n") + "\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sshd, "-D", "-e", "-f", cfg)
	var logb strings.Builder
	cmd.Stderr = &logb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	for deadline := time.Now().Add(30 * time.Second); ; {
		c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(addr, 22).String(), time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			t.Fatalf("sshd exited:\n%s", logb.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd does not listen on %s:22 after 30s:\n%s", addr, logb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSweepReadsSSHDBanner: a real sshd's identification line.
func TestSweepReadsSSHDBanner(t *testing.T) {
	r := testRange(t)
	a := host(r, 22)
	startSSHD(t, a)
	found, stats, err := Sweep(context.Background(), Options{Range: r, Ports: []uint16{22, 2375}, BannerTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].Addr != a || found[0].Port != 22 || !strings.HasPrefix(found[0].Banner, "SSH-2.0-OpenSSH_") || found[0].Problem != "" {
		t.Fatalf("found %+v, want %s:22 with OpenSSH's banner", found, a)
	}
	if stats.Open != 1 || stats.Closed != 511 {
		t.Errorf("stats %+v, want 1 open, 511 closed", stats)
	}
	t.Logf("%s:22 %s", a, found[0].Banner)
}
