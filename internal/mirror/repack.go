package mirror

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// repack makes a .deb of an installed package with dpkg-repack, into
// cache (kept between builds: a package already repacked at this version
// is reused). The files are the ones installed here, conffiles as they
// are on this machine.
func repack(ctx context.Context, c *Candidate, cache string) (string, error) {
	name := fmt.Sprintf("%s_%s_%s.deb", c.Name(), strings.ReplaceAll(c.Version(), ":", "%3a"), c.Arch())
	dest := filepath.Join(cache, name)
	if _, err := os.Stat(dest); err == nil {
		return dest, nil
	}
	tmp, err := os.MkdirTemp(cache, ".repack-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, "dpkg-repack", "--deb-option=-Zgzip", "--deb-option=-z1", c.Name()+":"+c.Arch())
	if c.Arch() == "all" {
		cmd = exec.CommandContext(ctx, "dpkg-repack", "--deb-option=-Zgzip", "--deb-option=-z1", c.Name())
	}
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("dpkg-repack %s: %w: %s", c.Name(), err, strings.TrimSpace(string(out)))
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("dpkg-repack %s: made %d files, want one .deb", c.Name(), len(debs))
	}
	if err := os.Rename(debs[0], dest); err != nil {
		return "", err
	}
	return dest, nil
}
