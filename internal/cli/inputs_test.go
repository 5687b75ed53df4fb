package cli

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/inventory"
)

// runReturns is run, failing the test instead of hanging when the command
// blocks (as it once did reading a FIFO).
func runReturns(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	type result struct {
		code     int
		out, err string
	}
	done := make(chan result, 1)
	go func() {
		c, o, e := run(t, args...)
		done <- result{c, o, e}
	}()
	select {
	case r := <-done:
		return r.code, r.out, r.err
	case <-time.After(time.Minute):
		t.Fatalf("provision %s blocked", strings.Join(args, " "))
		return 0, "", ""
	}
}

// TestUserFilesThatAreNotFiles: the inventory, provision.yaml and --config
// may name a device or a FIFO; each is refused at once, naming the file.
func TestUserFilesThatAreNotFiles(t *testing.T) {
	inv, err := filepath.Abs(example)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Chdir(dir)
	if err := syscall.Mkfifo("provision.yaml", 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"validate", "-i", inv}, "read settings provision.yaml: a named pipe (FIFO), not a regular file"},
		{[]string{"validate", "--config", "/dev/zero", "-i", inv}, "read settings /dev/zero: a character device, not a regular file"},
		{[]string{"validate", "--config", "/dev/null", "-i", "/dev/zero"}, "/dev/zero: cannot read the inventory: a character device, not a regular file"},
		{[]string{"validate", "--config", "/dev/null", "-i", filepath.Join(dir, "provision.yaml")}, "cannot read the inventory: a named pipe (FIFO), not a regular file"},
	} {
		code, _, errs := runReturns(t, tc.args...)
		if code == 0 || !strings.Contains(errs, tc.want) {
			t.Errorf("provision %s: exit %d, stderr %q, want ...%s...", strings.Join(tc.args, " "), code, errs, tc.want)
		}
	}
}

func TestVMsParallelMustBePositive(t *testing.T) {
	for _, n := range []string{"0", "-3"} {
		code, _, errs := run(t, "vms", "plan", "-i", example, "--parallel", n)
		if code != 2 || !strings.Contains(errs, "--parallel "+n+": the provider must work on at least 1 VM at a time") {
			t.Errorf("--parallel %s: exit %d, %s", n, code, errs)
		}
	}
}

// TestTokenIDWithSecretIsNotShown: an admin pasted user@realm!name=secret
// into the token ID variable. The commands that read it refuse it without
// printing it.
func TestTokenIDWithSecretIsNotShown(t *testing.T) {
	const secret = "8c4e6a52-4f1b-4f33-9a4c-0d4f3a7e9b21"
	t.Setenv("PM_API_TOKEN_ID", "root@pam!provision="+secret)
	t.Setenv("PM_API_TOKEN_SECRET", secret)
	code, out, errs := run(t, "preflight", "-i", example)
	if code == 0 || !strings.Contains(errs, "$PM_API_TOKEN_ID holds more than a token ID") {
		t.Errorf("preflight: exit %d, %s", code, errs)
	}
	if strings.Contains(out+errs, secret[:8]) {
		t.Errorf("preflight shows the secret:\n%s\n%s", out, errs)
	}

	_, _, _, err := simToken(&inventory.Proxmox{TokenIDEnv: "PM_API_TOKEN_ID", TokenSecretEnv: "PM_API_TOKEN_SECRET"}, filepath.Join(t.TempDir(), "token"))
	if err == nil || !strings.Contains(err.Error(), "holds more than a token ID") || strings.Contains(err.Error(), secret[:8]) {
		t.Errorf("pve-sim token: %v", err)
	}
}

// TestRenderAllOrNothing: `render -o DIR` that fails on one node leaves DIR
// as it was, not with the other nodes' directories written.
func TestRenderAllOrNothing(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "wrk-07"), []byte("in the way\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs := run(t, "render", "-i", example, "-o", dir, "--state-dir", t.TempDir())
	if code == 0 || !strings.Contains(errs, "write wrk-07") {
		t.Fatalf("render: exit %d, %s", code, errs)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "wrk-07" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("%s holds %d entries after a failed render: %v", dir, len(entries), names[:min(len(names), 10)])
	}
}
