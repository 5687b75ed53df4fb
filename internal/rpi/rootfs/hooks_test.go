package rootfs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhlab/provision/internal/testtool"
)

// chrootShim stands in for chroot(8) at the process boundary: the hooks
// call it for dpkg-divert, which it carries out as dpkg-divert --rename
// --remove does (the diverted file goes back to its name); any other
// command is recorded in the file calls and fails.
const chrootShim = `#!/bin/sh
root="$1"; shift
if [ "$1" = dpkg-divert ]; then
	while [ $# -gt 0 ]; do
		case "$1" in --divert) shift; div="$1" ;; --remove) shift; path="$1" ;; esac
		shift
	done
	if [ -e "$root$div" ]; then mv "$root$div" "$root$path"; fi
	exit 0
fi
echo "$*" >>"$CALLS"
exit 1
`

// The ca-certificates hook, run on a tree holding the system's own
// certificates, script and configuration, makes what the system's own
// update-ca-certificates made in /etc/ssl/certs: the same .pem links with
// the node's paths as targets, the same hash links, and the bundle (the
// system's may go on with certificates of the local administrator's).
func TestCACertificatesHook(t *testing.T) {
	script := testtool.Need(t, "update-ca-certificates", "ca-certificates")
	testtool.Need(t, "openssl", "")
	root, bin := t.TempDir(), t.TempDir()
	t.Setenv("CALLS", filepath.Join(bin, "calls"))
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	if err := os.WriteFile(filepath.Join(bin, "chroot"), []byte(chrootShim), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"usr/sbin", "usr/share", "etc/ssl/certs", "usr/local/share/ca-certificates"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("cp", "-a", "/usr/share/ca-certificates", filepath.Join(root, "usr/share/")).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	copyFile(t, script, filepath.Join(root, "usr/sbin/update-ca-certificates.provision"))
	copyFile(t, "/etc/ca-certificates.conf", filepath.Join(root, "etc/ca-certificates.conf"))
	// As the essential hook left it: the diverted name holds the script.
	if err := os.Symlink("/bin/true", filepath.Join(root, "usr/sbin/update-ca-certificates")); err != nil {
		t.Fatal(err)
	}

	run := func() string {
		t.Helper()
		out, err := exec.Command("sh", "-c", caCertificatesHook, "hook", root).CombinedOutput()
		if err != nil {
			t.Fatalf("hook: %v: %s", err, out)
		}
		return string(out)
	}
	out := run()
	if b, _ := os.ReadFile(filepath.Join(bin, "calls")); len(b) > 0 {
		t.Fatalf("the hook ran programs of the tree: %s", b)
	}
	if st, err := os.Lstat(filepath.Join(root, "usr/sbin/update-ca-certificates")); err != nil || !st.Mode().IsRegular() {
		t.Fatalf("update-ca-certificates is not restored: %v, %v", st, err)
	}

	entries, err := os.ReadDir(filepath.Join(root, "etc/ssl/certs"))
	if err != nil {
		t.Fatal(err)
	}
	pems, hashes := 0, 0
	for _, e := range entries {
		name := e.Name()
		if name == "ca-certificates.crt" {
			continue
		}
		got, err := os.Readlink(filepath.Join(root, "etc/ssl/certs", name))
		if err != nil {
			t.Errorf("%s is not a link: %v", name, err)
			continue
		}
		if strings.HasPrefix(got, root) {
			t.Errorf("%s -> %s: the link names the build's path", name, got)
		}
		want, err := os.Readlink(filepath.Join("/etc/ssl/certs", name))
		if err != nil || got != want {
			t.Errorf("%s -> %s, the system's -> %s (%v)", name, got, want, err)
		}
		if strings.HasSuffix(name, ".pem") {
			pems++
		} else {
			hashes++
		}
	}
	if pems < 100 || hashes < pems {
		t.Errorf("%d .pem links and %d hash links; output:\n%s", pems, hashes, out)
	}
	bundle, err := os.ReadFile(filepath.Join(root, "etc/ssl/certs/ca-certificates.crt"))
	if err != nil {
		t.Fatal(err)
	}
	system, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		t.Fatal(err)
	}
	if len(bundle) == 0 || !bytes.HasPrefix(system, bundle) {
		t.Errorf("bundle (%d bytes) is not the system's (%d bytes) or its beginning", len(bundle), len(system))
	}

	// With a hook in update.d the node's own programs must run it: the
	// hook goes through chroot (here the shim, which records the call).
	if err := os.MkdirAll(filepath.Join(root, "etc/ca-certificates/update.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/ca-certificates/update.d/jks-keystore"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(root, "usr/sbin/update-ca-certificates"), filepath.Join(root, "usr/sbin/update-ca-certificates.provision")); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("sh", "-c", caCertificatesHook, "hook", root).CombinedOutput(); err == nil {
		t.Fatalf("hook with update.d did not go through chroot: %s", out)
	}
	if b, _ := os.ReadFile(filepath.Join(bin, "calls")); string(b) != "update-ca-certificates\n" {
		t.Errorf("chroot calls = %q", b)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}
