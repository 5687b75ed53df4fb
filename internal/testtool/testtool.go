// Package testtool finds the programs tests run (mke2fs, qemu-nbd,
// dnsmasq, ...). A missing one skips the test on a developer's machine and
// fails it under CI (CI set), where scripts/install-deps.sh installed it:
// a test never skips silently in CI.
package testtool

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Path returns where tool is: on PATH, or in /usr/sbin or /sbin (which a
// non-root PATH may lack); "" when it is nowhere.
func Path(tool string) string {
	if p, err := exec.LookPath(tool); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(dir, tool); isFile(p) {
			return p
		}
	}
	return ""
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// Need returns the path of tool, from Debian package pkg ("" when it is
// the tool's own name); without it the test is skipped, or failed under CI.
func Need(t testing.TB, tool, pkg string) string {
	t.Helper()
	if p := Path(tool); p != "" {
		return p
	}
	if pkg == "" {
		pkg = tool
	}
	Missing(t, "needs %s (Debian package %s, installed by scripts/install-deps.sh)", tool, pkg)
	return ""
}

// NeedAll is Need for tools named as their packages are, or with the
// package after a colon ("mkfs.vfat:dosfstools").
func NeedAll(t testing.TB, tools ...string) {
	t.Helper()
	for _, tp := range tools {
		tool, pkg := tp, ""
		for i := range tp {
			if tp[i] == ':' {
				tool, pkg = tp[:i], tp[i+1:]
				break
			}
		}
		Need(t, tool, pkg)
	}
}

// Missing skips the test with the reason, or fails it when CI is set.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set, so this test must run: "+format, args...)
	}
	t.Skipf(format, args...)
}
