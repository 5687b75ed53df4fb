package pvesim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/fhlab/provision/internal/remote"
)

// requireSSHD skips when a real sshd cannot run here, and fails under CI,
// which installs openssh-server and runs the tests as root.
func requireSSHD(t *testing.T) {
	t.Helper()
	var why string
	if _, err := os.Stat(DefaultSSHDPath); err != nil {
		why = DefaultSSHDPath + " not found (install openssh-server: make deps)"
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

// chrootDir makes a node directory sshd accepts as a chroot (under /run:
// root's, unlike /tmp) and removes it when the test ends.
func chrootDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/run", "pvesim-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestSSHDUploadsLandInSnippets: a real sshd per simulated host takes SFTP
// uploads into the node's directory, where the VM start looks for the
// cicustom snippets; nothing lands on this machine's /var/lib/vz.
func TestSSHDUploadsLandInSnippets(t *testing.T) {
	requireSSHD(t)
	t.Parallel()
	ctx := t.Context()
	s, c := newTestSim(t, Options{})
	root := chrootDir(t)
	s.SetNodeDir("pve1", root)
	if err := os.MkdirAll(s.SnippetsDir("pve1", "local"), 0o755); err != nil {
		t.Fatal(err)
	}
	signer, _, err := remote.EnsureKey(filepath.Join(t.TempDir(), "id_ed25519"))
	if err != nil {
		t.Fatal(err)
	}
	pub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	d, err := StartSSHD(ctx, SSHDConfig{Node: "pve1", Root: root, Dir: t.TempDir(), Addr: "127.0.0.1:0",
		User: "root", AuthorizedKeys: []string{pub}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	if d.Port == 0 || d.Addr != fmt.Sprintf("127.0.0.1:%d", d.Port) || !strings.HasPrefix(d.HostKey, "ssh-ed25519 ") {
		t.Errorf("sshd %+v", d)
	}

	name := fmt.Sprintf("pvesim-test-%d-user.yaml", os.Getpid())
	cl, err := remote.Dial(ctx, remote.Config{Host: "127.0.0.1", Port: d.Port, User: "root", Signer: signer,
		KnownHosts: remote.NewKnownHosts(filepath.Join(t.TempDir(), "known_hosts")), Retry: remote.RetryPolicy{MaxAttempts: 1}})
	if err != nil {
		t.Fatalf("dial sshd: %v (log: %s)", err, logTail(d.Log))
	}
	t.Cleanup(func() { cl.Close() })
	res, err := cl.Upload(ctx, "/var/lib/vz/snippets", []remote.File{{Name: name, Content: []byte("#cloud-config\n")}}, remote.UploadOptions{})
	if err != nil || len(res.Written) != 1 {
		t.Fatalf("upload: %+v, %v", res, err)
	}
	if got, err := os.ReadFile(filepath.Join(s.SnippetsDir("pve1", "local"), name)); err != nil || string(got) != "#cloud-config\n" {
		t.Errorf("uploaded snippet in the node's directory: %q, %v", got, err)
	}
	if _, err := os.Stat(filepath.Join("/var/lib/vz/snippets", name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the upload escaped the chroot: /var/lib/vz/snippets/%s: %v", name, err)
	}
	// SFTP only: no shell, no commands.
	if _, _, err := cl.Run(ctx, "id"); err == nil {
		t.Error("a command ran on the simulated host's sshd")
	}

	// The VM start reads the uploaded snippet, and only that one.
	for vmid, volid := range map[int]string{4101: "local:snippets/" + name, 4102: "local:snippets/other.yaml"} {
		if err := s.AddVM(VM{Node: "pve1", VMID: vmid, Name: fmt.Sprint(vmid), Config: map[string]string{
			"cicustom": "user=" + volid, "ide2": fmt.Sprintf("local-lvm:vm-%d-cloudinit,media=cdrom", vmid)}}); err != nil {
			t.Fatal(err)
		}
		want := "OK"
		if vmid == 4102 {
			want = "can't find file '" + volid + "'"
		}
		if ex := c.waitTask(c.ok("POST", fmt.Sprintf("/nodes/pve1/qemu/%d/status/start", vmid), nil)); ex != want {
			t.Errorf("start %d with %s: %q, want %q", vmid, volid, ex, want)
		}
	}
}

// TestSSHDRefuses: settings sshd would refuse, or that would leave the
// simulated host open, are refused before anything starts.
func TestSSHDRefuses(t *testing.T) {
	requireSSHD(t)
	t.Parallel()
	good := SSHDConfig{Node: "pve1", Root: chrootDir(t), Dir: t.TempDir(), Addr: "127.0.0.1:0", User: "root",
		AuthorizedKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGPVVGlKnhJV7BQ1FYjdwArZeElwVh+YVKLidECc4Bac x"}}
	for _, tc := range []struct {
		name string
		edit func(*SSHDConfig)
		want string
	}{
		{"root under /tmp", func(c *SSHDConfig) { c.Root = t.TempDir() }, "owned by root and writable by nobody else"},
		{"relative root", func(c *SSHDConfig) { c.Root = "run/x" }, "not an absolute path"},
		{"not loopback", func(c *SSHDConfig) { c.Addr = "0.0.0.0:0" }, "not a loopback address"},
		{"no keys", func(c *SSHDConfig) { c.AuthorizedKeys = nil }, "no authorized key"},
		{"bad user", func(c *SSHDConfig) { c.User = "root,admin" }, "is not a user name"},
	} {
		c := good
		tc.edit(&c)
		if d, err := StartSSHD(context.Background(), c); err == nil || !strings.Contains(err.Error(), tc.want) {
			if d != nil {
				d.Close()
			}
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
