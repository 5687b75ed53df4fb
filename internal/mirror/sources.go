package mirror

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// DebDir reads the control of every .deb in dir (not recursive).
func DebDir(ctx context.Context, dir string) ([]*Candidate, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.deb"))
	if err != nil {
		return nil, err
	}
	var out []*Candidate
	for _, f := range files {
		ctl, err := exec.CommandContext(ctx, "dpkg-deb", "--field", f).Output()
		if err != nil {
			return nil, fmt.Errorf("read control of %s: %w", f, exitErr(err))
		}
		st := ParseControl(ctl)
		if len(st) != 1 || st[0].Get("Package") == "" {
			return nil, fmt.Errorf("read control of %s: not a Debian package", f)
		}
		out = append(out, &Candidate{Control: st[0], Deb: f})
	}
	return out, nil
}

// Installed lists the packages installed on this machine (dpkg's status
// file), to be repacked with dpkg-repack when the closure needs them.
func Installed(statusFile string) ([]*Candidate, error) {
	data, err := os.ReadFile(statusFile)
	if err != nil {
		return nil, fmt.Errorf("read dpkg status: %w", err)
	}
	var out []*Candidate
	for _, st := range ParseControl(data) {
		if strings.HasSuffix(st.Get("Status"), " installed") {
			out = append(out, &Candidate{Control: st, Installed: true})
		}
	}
	return out, nil
}

func exitErr(err error) error {
	if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
	}
	return err
}
