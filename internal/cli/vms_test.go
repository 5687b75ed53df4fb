package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestVMsNeedsTheTokenFromTheEnvironment(t *testing.T) {
	t.Setenv("PM_API_TOKEN_ID", "")
	t.Setenv("PM_API_TOKEN_SECRET", "")
	for _, sub := range []string{"plan", "apply", "destroy"} {
		code, _, errs := run(t, "vms", sub, "-i", "../../inventory/local.yaml", "--state-dir", t.TempDir())
		if code != 1 || !strings.Contains(errs, "$PM_API_TOKEN_ID and $PM_API_TOKEN_SECRET not set") {
			t.Errorf("vms %s without a token: exit %d, stderr:\n%s", sub, code, errs)
		}
	}
}

func TestVMsHelpTeaches(t *testing.T) {
	code, out, _ := run(t, "vms", "--help")
	for _, s := range []string{"3.0.2-rc07", "--terraform-mirror", "known_hosts", "force_recreate_on_change_of", "provision vms apply -i"} {
		if !strings.Contains(out, s) {
			t.Errorf("vms --help lacks %q", s)
		}
	}
	if code != 0 {
		t.Errorf("exit %d", code)
	}
	if code, out, _ := run(t, "vms", "apply", "--help"); code != 0 || !strings.Contains(out, "--yes") || !strings.Contains(out, "--no-snippets") {
		t.Errorf("vms apply --help: %d\n%s", code, out)
	}
}

// TestVMsDestroyNodeMustBeAVM: --node names a VM of the inventory, or the
// destroy is a usage error that runs nothing.
func TestVMsDestroyNodeMustBeAVM(t *testing.T) {
	for _, c := range []struct{ node, want string }{
		{"nope", "--node nope: not a node of the inventory ../../inventory/local.yaml"},
		{"pi-p1-01", "--node pi-p1-01: a pi, not a VM: provision destroy --node pi-p1-01 takes it out of the swarm"},
	} {
		state := t.TempDir()
		code, _, errs := run(t, "vms", "destroy", "-i", "../../inventory/local.yaml", "--state-dir", state, "--node", c.node, "--yes")
		if code != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("vms destroy --node %s: exit %d, want 2 and %q:\n%s", c.node, code, c.want, errs)
		}
		if _, err := os.Stat(filepath.Join(state, "terraform")); err == nil {
			t.Errorf("vms destroy --node %s wrote the terraform module before refusing", c.node)
		}
	}
}
