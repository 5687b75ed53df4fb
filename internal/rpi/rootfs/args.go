package rootfs

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// withDefaults returns o with empty fields set to the defaults.
func withDefaults(o Options, keyringExists func(string) bool) Options {
	if o.Suite == "" {
		o.Suite = DefaultSuite
	}
	if o.Mirror == "" {
		o.Mirror = DefaultMirror
	}
	if o.Arch == "" {
		o.Arch = DefaultArch
	}
	if len(o.Components) == 0 {
		o.Components = DefaultComponents()
	}
	if o.Hostname == "" {
		o.Hostname = DefaultHostname
	}
	if o.Keyring == "" && keyringExists(DebianKeyring) {
		o.Keyring = DebianKeyring
	}
	return o
}

// packages is BasePackages plus o.Packages, sorted, without duplicates.
func packages(o *Options) []string { return union(BasePackages(), o.Packages) }

// modules is InitramfsModules plus o.InitramfsModules, in that order,
// without duplicates.
func modules(o *Options) []string {
	out := slices.Clone(InitramfsModules())
	for _, m := range o.InitramfsModules {
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

func union(a, b []string) []string {
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

// check refuses options mmdebstrap would misread or a shell would split.
func check(o *Options) error {
	if o.Dir == "" {
		return fmt.Errorf("rootfs: no directory given (Options.Dir)")
	}
	for _, f := range []struct {
		field string
		vals  []string
	}{
		{"Suite", []string{o.Suite}}, {"Arch", []string{o.Arch}},
		{"Components", o.Components}, {"Packages", o.Packages},
		{"InitramfsModules", o.InitramfsModules}, {"Hostname", []string{o.Hostname}},
	} {
		for _, v := range f.vals {
			if !safeWord(v) {
				return fmt.Errorf("rootfs: %s: %q is not a name (letters, digits and . + - _ : only)", f.field, v)
			}
		}
	}
	if strings.ContainsAny(o.Mirror, " \t\n'\"") || !(strings.HasPrefix(o.Mirror, "http://") || strings.HasPrefix(o.Mirror, "https://") || strings.HasPrefix(o.Mirror, "file://")) {
		return fmt.Errorf("rootfs: Mirror: %q is not an http://, https:// or file:// URL", o.Mirror)
	}
	if o.SourceDateEpoch < 0 {
		return fmt.Errorf("rootfs: SourceDateEpoch: %d is before 1970", o.SourceDateEpoch)
	}
	return nil
}

func safeWord(s string) bool {
	if s == "" || s[0] == '-' {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune(".+-_:", r):
		default:
			return false
		}
	}
	return true
}

// Slim drops documentation, manual pages and translations while packages
// are unpacked (the copyright files stay): the nodes are managed by
// provision, not read.
func slimDpkgOptions() []string {
	return []string{
		"path-exclude=/usr/share/man/*",
		"path-exclude=/usr/share/info/*",
		"path-exclude=/usr/share/doc/*",
		"path-include=/usr/share/doc/*/copyright",
		"path-exclude=/usr/share/locale/*",
		"path-include=/usr/share/locale/locale.alias",
		"path-exclude=/usr/share/lintian/*",
	}
}

// Args is mmdebstrap's command line (without the program name) for o with
// the hook scripts in hookDir.
func Args(o Options, hookDir string) []string {
	args := []string{
		"--variant=apt",
		"--architectures=" + o.Arch,
		"--components=" + strings.Join(o.Components, ","),
		"--include=" + strings.Join(packages(&o), ","),
		"--format=directory",
		"--hook-dir=" + hookDir,
		`--aptopt=Acquire::Retries "3"`,
		`--aptopt=APT::Install-Recommends "false"`,
	}
	for _, d := range slimDpkgOptions() {
		args = append(args, "--dpkgopt="+d)
	}
	if o.Keyring != "" {
		args = append(args, "--keyring="+o.Keyring)
	}
	return append(args, o.Suite, o.Dir, o.Mirror)
}

// SystemPath is the PATH mmdebstrap and the hooks run with (sudo's
// secure_path): the tree's maintainer scripts need the sbin directories,
// and interpreter shims in a user's PATH (pyenv, ...) must not replace the
// system's python3 that mmdebstrap's helpers run with.
const SystemPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Env is the environment mmdebstrap runs in: the caller's with PATH set to
// SystemPath, a plain locale for the tools in the tree, and
// SOURCE_DATE_EPOCH.
func Env(base []string, o Options) []string {
	env := make([]string, 0, len(base)+4)
	for _, e := range base {
		k, _, _ := strings.Cut(e, "=")
		switch k {
		case "SOURCE_DATE_EPOCH", "LC_ALL", "LANG", "LANGUAGE", "PATH":
			continue
		}
		env = append(env, e)
	}
	env = append(env, "PATH="+SystemPath, "LC_ALL=C.UTF-8", "DEBIAN_FRONTEND=noninteractive")
	if o.SourceDateEpoch > 0 {
		env = append(env, "SOURCE_DATE_EPOCH="+strconv.FormatInt(o.SourceDateEpoch, 10))
	}
	return env
}
