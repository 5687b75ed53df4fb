package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestApply runs the runbook's first stages on the emulated lab's inventory
// (no lab needed: validate and render touch nothing remote): the seeds are
// written, a re-run changes nothing, pi-boot names the SD racks' flash
// commands and stops the run (exit 1, with the fix) when the netbooted
// racks' golden image is not built, and an unknown stage is a usage error.
func TestApply(t *testing.T) {
	state := t.TempDir()
	args := []string{"apply", "-i", "../../inventory/local.yaml", "--state-dir", state}
	tests := []struct {
		name    string
		only    string
		code    int
		wantErr string // in stderr
	}{
		{"first run writes the seeds", "validate,render", 0, "15 written, 0 unchanged"},
		{"re-run changes nothing", "validate,render", 0, "0 written, 15 unchanged"},
		{"SD racks get the flash command", "validate,pi-boot", 1, "provision flash -i ../../inventory/local.yaml --rack p2 --watch"},
		{"netboot without a golden image stops the run, saying what to set", "validate,pi-boot", 1, "netboot: racks p1 boot no single golden image: give them one (pis.image, or the racks' image:) in ../../inventory/local.yaml"},
		{"unknown stage", "nope", 2, `no stage named "nope"`},
		{"a failed stage says how to go on from it", "from:pi-boot", 1, "to go on from there once it is fixed: provision apply -i ../../inventory/local.yaml --from pi-boot"},
		{"--from an unknown stage", "from:nope", 2, `no stage named "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel := []string{"--only", tt.only}
			if from, ok := strings.CutPrefix(tt.only, "from:"); ok {
				sel = []string{"--from", from}
			}
			code, _, errs := run(t, append(args, sel...)...)
			if code != tt.code || !strings.Contains(errs, tt.wantErr) {
				t.Errorf("apply --only %s: exit %d, want %d with %q in:\n%s", tt.only, code, tt.code, tt.wantErr, errs)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(state, "cloud-init", "pi-p1-01", "user-data")); err != nil {
		t.Errorf("no seed written: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(state, "state.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file: %v, mode %v; want 0600", err, fi)
	}
}
