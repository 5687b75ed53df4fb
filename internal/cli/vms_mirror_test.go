package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhlab/provision/internal/terraform"
)

// requireTerraform skips a test without terraform, except under CI.
func requireTerraform(t *testing.T) {
	t.Helper()
	if _, err := terraform.Find(t.Context(), terraform.FindOptions{}); err != nil {
		if ci := os.Getenv("CI"); ci != "" && ci != "false" {
			t.Fatalf("CI=%s but terraform cannot be found: %v", ci, err)
		}
		t.Skipf("skipping: %v", err)
	}
}

// `vms plan` as the README shows it: a relative inventory, the default
// (relative) state dir .provision/<lab> and a relative mirror. Terraform
// must read the generated CLI configuration and look for the provider in
// the mirror only: the mirror is empty, so init fails naming it, and never
// because the configuration could not be opened.
func TestVMsPlanDefaultStateDirUsesTheMirror(t *testing.T) {
	requireTerraform(t)
	path := copyExample(t, func(s string) string { return s })
	t.Chdir(filepath.Dir(path))
	if err := os.Mkdir("mirror", 0o700); err != nil {
		t.Fatal(err)
	}
	mirror, err := filepath.Abs("mirror")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("PM_API_TOKEN_ID", "provision@pve!terraform")
	t.Setenv("PM_API_TOKEN_SECRET", "mirror-test-"+strings.Repeat("7", 8))
	t.Setenv("PROVISION_TERRAFORM_MIRROR", "mirror")
	code, out, errs := run(t, "vms", "plan", "-i", "lab.yaml")
	flat := strings.Join(strings.Fields(errs), " ")
	if code != 1 {
		t.Fatalf("vms plan with an empty mirror exited %d, want 1\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	for _, s := range []string{"terraform init in " + filepath.Join(filepath.Dir(mirror), ".provision", "fh-lab", "terraform"), "not found in any of the search locations", "- " + mirror} {
		if !strings.Contains(flat, s) {
			t.Errorf("stderr lacks %q (terraform did not use the mirror):\n%s", s, errs)
		}
	}
	if strings.Contains(errs, "Unable to open CLI configuration file") || strings.Contains(errs, "registry.terraform.io on") {
		t.Errorf("terraform ignored the CLI configuration:\n%s", errs)
	}
	if _, err := os.Stat(filepath.Join(".provision", "fh-lab", "terraform", terraform.CLIConfigName)); err != nil {
		t.Errorf("CLI configuration not in the default state dir: %v", err)
	}
}
