package remote_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fhlab/provision/internal/remote"
)

// The sshd of these tests serves this machine's filesystem, so what the
// upload did can be checked with os directly.

func TestUploadWritesSkipsAndReplacesAtomically(t *testing.T) {
	t.Parallel()
	key := newClientKey(t)
	srv := newSSHD(t, sshdOptions{}, key.PublicKey())
	kh := remote.NewKnownHosts(filepath.Join(t.TempDir(), "known_hosts"))
	c := mustDial(t, srv.config(key, kh))
	dir := filepath.Join(t.TempDir(), "var", "lib", "vz", "snippets") // missing: created

	files := []remote.File{
		{Name: "lab-mgr-1-user.yaml", Content: []byte("#cloud-config\nhostname: mgr-1\n"), Mode: 0o600},
		{Name: "lab-mgr-1-meta.yaml", Content: []byte("instance-id: lab-mgr-1\n"), Mode: 0o640},
	}
	res, err := c.Upload(t.Context(), dir, files, remote.UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Written) != 2 || len(res.Unchanged) != 0 {
		t.Fatalf("first upload = %+v, want 2 written", res)
	}
	for _, f := range files {
		p := filepath.Join(dir, f.Name)
		if got := readFile(t, p); string(got) != string(f.Content) {
			t.Errorf("%s = %q, want %q", p, got, f.Content)
		}
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != f.Mode {
			t.Errorf("%s mode = %v, want %v", p, fi.Mode().Perm(), f.Mode)
		}
	}

	res, err = c.Upload(t.Context(), dir, files, remote.UploadOptions{BeforeRename: func(tmp, _ string) error {
		t.Errorf("unchanged content rewritten through %s", tmp)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Written) != 0 || len(res.Unchanged) != 2 {
		t.Fatalf("second upload = %+v, want 2 unchanged", res)
	}

	// A changed file: the new content is complete under a temporary name
	// in the same directory while the old one is still in place.
	changed := slices.Clone(files)
	changed[0].Content = []byte("#cloud-config\nhostname: mgr-1\npackages: [qemu-guest-agent]\n")
	final := filepath.Join(dir, changed[0].Name)
	var sawTmp string
	res, err = c.Upload(t.Context(), dir, changed, remote.UploadOptions{BeforeRename: func(tmp, fin string) error {
		sawTmp = tmp
		if fin != final {
			t.Errorf("renaming to %s, want %s", fin, final)
		}
		if filepath.Dir(tmp) != dir || !strings.HasPrefix(filepath.Base(tmp), ".") {
			t.Errorf("temporary file %s is not a hidden file in %s", tmp, dir)
		}
		if got := readFile(t, fin); string(got) != string(files[0].Content) {
			t.Errorf("before the rename %s = %q, want the old content", fin, got)
		}
		if got := readFile(t, tmp); string(got) != string(changed[0].Content) {
			t.Errorf("temporary file = %q, want the whole new content", got)
		}
		if fi, err := os.Stat(tmp); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("temporary file mode: %v %v, want 0600", fi.Mode().Perm(), err)
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Written, []string{changed[0].Name}) || !slices.Equal(res.Unchanged, []string{changed[1].Name}) {
		t.Fatalf("third upload = %+v, want only %s written", res, changed[0].Name)
	}
	if sawTmp == "" {
		t.Fatal("no temporary file was used")
	}
	if got := readFile(t, final); string(got) != string(changed[0].Content) {
		t.Errorf("after the upload %s = %q", final, got)
	}
	if _, err := os.Stat(sawTmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file %s left behind: %v", sawTmp, err)
	}

	// A mode change alone rewrites the file.
	changed[1].Mode = 0o600
	res, err = c.Upload(t.Context(), dir, changed, remote.UploadOptions{})
	if err != nil || !slices.Equal(res.Written, []string{changed[1].Name}) {
		t.Errorf("mode change: %+v, %v", res, err)
	}

	// An aborted upload leaves the old file and no temporary file.
	changed[0].Content = []byte("#cloud-config\n# half\n")
	_, err = c.Upload(t.Context(), dir, changed, remote.UploadOptions{BeforeRename: func(string, string) error {
		return errors.New("stopped on purpose")
	}})
	if err == nil || !strings.Contains(err.Error(), "stopped on purpose") || !strings.Contains(err.Error(), final) {
		t.Errorf("aborted upload = %v, want it to name %s and the cause", err, final)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("directory after an aborted upload holds %d entries, want the 2 files", len(entries))
	}
	if got := readFile(t, final); string(got) == string(changed[0].Content) {
		t.Errorf("aborted upload replaced %s", final)
	}

	if _, err := c.Upload(t.Context(), dir, []remote.File{{Name: "../escape", Content: []byte("x")}}, remote.UploadOptions{}); err == nil {
		t.Error("a name with a slash was accepted")
	}
}

func TestUploadRefusesChangedHostKey(t *testing.T) {
	t.Parallel()
	key := newClientKey(t)
	srv := newSSHD(t, sshdOptions{}, key.PublicKey())
	khPath := filepath.Join(t.TempDir(), "known_hosts")
	kh := remote.NewKnownHosts(khPath)
	dir := t.TempDir()

	c := mustDial(t, srv.config(key, kh)) // trusted on first use
	if _, err := c.Upload(t.Context(), dir, []remote.File{{Name: "a", Content: []byte("1")}}, remote.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(readFile(t, khPath)) == 0 {
		t.Fatal("host key not recorded on first use")
	}
	c.Close()

	srv.newHostKeys()
	srv.restart()
	_, err := remote.Dial(t.Context(), srv.config(key, kh))
	if !errors.Is(err, remote.ErrHostKeyChanged) {
		t.Fatalf("dial after the host key changed = %v, want ErrHostKeyChanged", err)
	}
}

func TestUploadCancelled(t *testing.T) {
	t.Parallel()
	key := newClientKey(t)
	srv := newSSHD(t, sshdOptions{}, key.PublicKey())
	c := mustDial(t, srv.config(key, remote.NewKnownHosts(filepath.Join(t.TempDir(), "known_hosts"))))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	dir := t.TempDir()
	if _, err := c.Upload(ctx, dir, []remote.File{{Name: "a", Content: []byte("1")}}, remote.UploadOptions{}); err == nil {
		t.Fatal("upload with a cancelled context succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); err == nil {
		t.Error("a cancelled upload wrote the file")
	}
}

// TestRemove deletes the named files over SFTP, counts one not there as
// absent, leaves the others, and refuses a directory, a link and a name
// with a slash.
func TestRemove(t *testing.T) {
	t.Parallel()
	key := newClientKey(t)
	srv := newSSHD(t, sshdOptions{}, key.PublicKey())
	kh := remote.NewKnownHosts(filepath.Join(t.TempDir(), "known_hosts"))
	c := mustDial(t, srv.config(key, kh))
	dir := t.TempDir()
	for _, name := range []string{"lab-vm-1-user.yaml", "lab-vm-1-meta.yaml", "other.yaml"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	res, err := c.Remove(t.Context(), dir, []string{"lab-vm-1-user.yaml", "lab-vm-1-meta.yaml", "lab-vm-1-network.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Removed, []string{"lab-vm-1-user.yaml", "lab-vm-1-meta.yaml"}) || !slices.Equal(res.Absent, []string{"lab-vm-1-network.yaml"}) {
		t.Errorf("Remove = %+v", res)
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 1 || left[0].Name() != "other.yaml" {
		t.Errorf("left in the directory: %v, want only other.yaml", left)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("other.yaml", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"sub", "link", "../other.yaml"} {
		if _, err := c.Remove(t.Context(), dir, []string{name}); err == nil {
			t.Errorf("Remove %q: no error", name)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "link")); err != nil {
		t.Errorf("the link was removed: %v", err)
	}
}
