package image

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/fhlab/provision/internal/inventory"
)

// DefinitionKind identifies an image definition file.
const DefinitionKind = "PiImage"

// Definition is one images/rpi/<name>.yaml: what a Raspberry Pi image is
// built from and what is baked into it.
type Definition struct {
	APIVersion  string `yaml:"apiVersion"`
	Kind        string `yaml:"kind"`
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	// Exactly one source.
	Debian *DebianSource `yaml:"debian"`
	Base   *BaseSource   `yaml:"base"`

	Boot     Boot     `yaml:"boot"`
	Overlays []string `yaml:"overlays"`
	Radios   Radios   `yaml:"radios"`
	// DockerDataRoot is where docker keeps images and containers; default
	// /var/lib/docker. Another path becomes daemon.json's data-root.
	DockerDataRoot string `yaml:"dockerDataRoot"`
	// RootSize is the root partition of a Debian-built image ("3GiB");
	// default: the root tree's size plus 20% and 256 MiB.
	RootSize string `yaml:"rootSize"`
	// BootSize is the FAT partition of a Debian-built image; default 512MiB.
	BootSize string `yaml:"bootSize"`

	// File is the definition's path (for messages); FS holds the files it
	// names (boot files, overlays), Dir is where a relative base.path starts.
	File  string `yaml:"-"`
	FS    fs.FS  `yaml:"-"`
	Dir   string `yaml:"-"`
	Raw   []byte `yaml:"-"`
	lines map[string]int
}

// DebianSource builds the root file system from Debian's packages.
type DebianSource struct {
	Suite            string   `yaml:"suite"`
	Mirror           string   `yaml:"mirror"`
	Components       []string `yaml:"components"`
	Packages         []string `yaml:"packages"`
	InitramfsModules []string `yaml:"initramfsModules"`
}

// BaseSource is a Raspberry Pi OS or Ubuntu image, raw or .xz.
type BaseSource struct {
	Path   string `yaml:"path"`
	URL    string `yaml:"url"`
	SHA256 string `yaml:"sha256"`
}

// Boot names the boot partition's files, relative to the definition.
type Boot struct {
	// Config is config.txt (a template: {{ .Kernel }}, {{ .Initramfs }}).
	Config string `yaml:"config"`
	// Cmdline is the cmdline.txt template of a Debian-built image
	// ({{ .RootPARTUUID }}); a base image keeps its own cmdline.txt.
	Cmdline string `yaml:"cmdline"`
}

// Radios says which radios stay on; both are off unless set to true
// (dtoverlay=disable-wifi / disable-bt in config.txt).
type Radios struct {
	WiFi      bool `yaml:"wifi"`
	Bluetooth bool `yaml:"bluetooth"`
}

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)
	sizeRE   = regexp.MustCompile(`^([0-9]+)(MiB|GiB)$`)
)

// LoadDefinition reads name from dir: either a path to a .yaml file, or the
// name of a definition (<name>.yaml) in defs. baseDir is where a relative
// base.path of a definition from defs starts (the inventory's directory);
// a definition read from a path resolves it against its own directory.
func LoadDefinition(defs fs.FS, name, baseDir string) (*Definition, error) {
	var (
		data []byte
		err  error
		d    = &Definition{}
	)
	if strings.HasSuffix(name, ".yaml") || strings.ContainsRune(name, os.PathSeparator) {
		d.File = name
		d.Dir = filepath.Dir(name)
		d.FS = os.DirFS(d.Dir)
		data, err = os.ReadFile(name)
	} else {
		if !nameRE.MatchString(name) {
			return nil, fmt.Errorf("image %q: not a definition name (lower-case letters, digits, . _ -) nor a .yaml path", name)
		}
		d.File = "images/rpi/" + name + ".yaml"
		d.Dir = baseDir
		d.FS = defs
		data, err = fs.ReadFile(defs, name+".yaml")
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("image %q: no definition %s (known: %s)", name, d.File, strings.Join(Names(defs), ", "))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("read image definition: %w", err)
	}
	lines, err := inventory.DecodeStrict(d.File, data, d)
	if err != nil {
		return nil, err
	}
	d.lines = lines
	d.Raw = data
	if err := d.validate(); err != nil {
		return nil, err
	}
	return d, nil
}

// Names lists the definitions in defs.
func Names(defs fs.FS) []string {
	m, _ := fs.Glob(defs, "*.yaml")
	for i := range m {
		m[i] = strings.TrimSuffix(m[i], ".yaml")
	}
	return m
}

func (d *Definition) problem(field, format string, args ...any) inventory.Problem {
	return inventory.Problem{File: d.File, Line: d.line(field), Field: field, Msg: fmt.Sprintf(format, args...)}
}

// line is the line of a field path, or of its nearest parent that is in
// the file (a missing field is reported where its section is).
func (d *Definition) line(field string) int {
	for f := field; f != ""; f = parentField(f) {
		if l, ok := d.lines[f]; ok {
			return l
		}
	}
	return 1
}

func parentField(f string) string {
	if i := strings.LastIndexAny(f, ".["); i > 0 {
		return f[:i]
	}
	return ""
}

func (d *Definition) validate() error {
	var ps inventory.Problems
	add := func(field, format string, args ...any) { ps = append(ps, d.problem(field, format, args...)) }
	if d.APIVersion != inventory.APIVersion {
		add("apiVersion", "%q is not supported; this tool reads apiVersion: %s", d.APIVersion, inventory.APIVersion)
	}
	if d.Kind != DefinitionKind {
		add("kind", "%q is not supported; an image definition has kind: %s", d.Kind, DefinitionKind)
	}
	if base := strings.TrimSuffix(path.Base(filepath.ToSlash(d.File)), ".yaml"); d.Name != base {
		add("name", "%q must be the file's name, %q", d.Name, base)
	}
	switch {
	case d.Debian == nil && d.Base == nil:
		add("debian", "missing: an image is built from debian: (packages) or base: (an image file)")
	case d.Debian != nil && d.Base != nil:
		add("base", "an image has one source: debian: or base:, not both")
	case d.Debian != nil:
		db := d.Debian
		if db.Suite == "" {
			add("debian.suite", "missing (e.g. bookworm)")
		}
		if db.Mirror == "" {
			add("debian.mirror", "missing (e.g. http://deb.debian.org/debian)")
		}
		if len(db.Packages) == 0 {
			add("debian.packages", "missing: at least the kernel, raspi-firmware and docker.io")
		}
		if d.Boot.Cmdline == "" {
			add("boot.cmdline", "missing: a Debian-built image needs a cmdline.txt template")
		}
	case d.Base != nil:
		b := d.Base
		if (b.Path == "") == (b.URL == "") {
			add("base.path", "give exactly one of base.path and base.url")
		}
		if b.URL != "" && !strings.HasPrefix(b.URL, "https://") && !strings.HasPrefix(b.URL, "http://") {
			add("base.url", "%q is not an http(s) URL", b.URL)
		}
		if !sha256RE.MatchString(b.SHA256) {
			add("base.sha256", "must be the 64 lower-case hex digits of the image file's SHA-256 (sha256sum FILE)")
		}
		if d.Boot.Cmdline != "" {
			add("boot.cmdline", "a base image keeps its own cmdline.txt (provision adds the memory cgroup and seed tokens); remove this")
		}
		if d.RootSize != "" || d.BootSize != "" {
			add("rootSize", "sizes apply to Debian-built images only; a base image keeps its partitions")
		}
	}
	if d.Boot.Config == "" {
		add("boot.config", "missing: the config.txt to put on the boot partition")
	}
	for i, f := range []string{d.Boot.Config, d.Boot.Cmdline} {
		if f == "" {
			continue
		}
		if _, err := fs.Stat(d.FS, f); err != nil {
			add([]string{"boot.config", "boot.cmdline"}[i], "%s: no such file next to the definition", f)
		}
	}
	for i, o := range d.Overlays {
		if st, err := fs.Stat(d.FS, o); err != nil || !st.IsDir() {
			add(fmt.Sprintf("overlays[%d]", i), "%s: no such directory next to the definition", o)
		}
	}
	if d.DockerDataRoot != "" && (!strings.HasPrefix(d.DockerDataRoot, "/") || cleanPath(d.DockerDataRoot) != d.DockerDataRoot) {
		add("dockerDataRoot", "%q must be a clean absolute path", d.DockerDataRoot)
	}
	for _, s := range []struct{ field, v string }{{"rootSize", d.RootSize}, {"bootSize", d.BootSize}} {
		if s.v != "" && !sizeRE.MatchString(s.v) {
			add(s.field, "%q: write a size like 512MiB or 3GiB", s.v)
		}
	}
	return ps.Err()
}

// DataRoot is docker's data-root on the image.
func (d *Definition) DataRoot() string {
	if d.DockerDataRoot == "" {
		return "/var/lib/docker"
	}
	return d.DockerDataRoot
}

func parseSize(s string, def int64) int64 {
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		return def
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	if m[2] == "GiB" {
		return n << 30
	}
	return n << 20
}

// BasePath is base.path resolved against the definition's directory.
func (d *Definition) BasePath() string {
	if d.Base == nil || d.Base.Path == "" {
		return ""
	}
	return inventory.ResolvePath(d.Dir, d.Base.Path)
}
