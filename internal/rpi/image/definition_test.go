package image

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestShippedDefinitions loads every definition in images/rpi.
func TestShippedDefinitions(t *testing.T) {
	defs := rpiDefs(t)
	names := Names(defs)
	if len(names) < 2 {
		t.Fatalf("images/rpi has %v", names)
	}
	for _, n := range names {
		d, err := LoadDefinition(defs, n, ".")
		if err != nil {
			t.Errorf("%s: %v", n, err)
			continue
		}
		if d.Debian != nil && !strings.Contains(strings.Join(d.Debian.Components, " "), "non-free-firmware") {
			t.Errorf("%s: raspi-firmware needs the non-free-firmware component", n)
		}
	}
}

func TestDefinitionProblems(t *testing.T) {
	head := "apiVersion: provision/v1\nkind: PiImage\nname: x\n"
	cases := []struct{ name, yaml, want string }{
		{"no source", head + "boot: {config: c.txt}\n", "x.yaml:1: debian: missing: an image is built from debian: (packages) or base: (an image file)"},
		{"both sources", head + "debian: {suite: s, mirror: m, packages: [a]}\nbase: {path: b.img, sha256: \"" + strings.Repeat("a", 64) + "\"}\nboot: {config: c.txt, cmdline: c.txt}\n", "x.yaml:5: base: an image has one source"},
		{"bad sha", head + "base: {path: b.img, sha256: abc}\nboot: {config: c.txt}\n", "x.yaml:4: base.sha256: must be the 64 lower-case hex digits"},
		{"missing boot file", head + "base: {path: b.img, sha256: \"" + strings.Repeat("a", 64) + "\"}\nboot: {config: nope.txt}\n", "x.yaml:5: boot.config: nope.txt: no such file next to the definition"},
		{"wrong name", "apiVersion: provision/v1\nkind: PiImage\nname: y\nbase: {path: b.img, sha256: \"" + strings.Repeat("a", 64) + "\"}\nboot: {config: c.txt}\n", `x.yaml:3: name: "y" must be the file's name, "x"`},
		{"wrong type", head + "base: {path: b.img, sha256: \"" + strings.Repeat("a", 64) + "\"}\nboot: {config: c.txt}\nradios: {wifi: maybe}\n", `x.yaml:6: radios.wifi: must be true or false, not "maybe"`},
		{"bad size", head + "debian: {suite: s, mirror: m, packages: [a]}\nboot: {config: c.txt, cmdline: c.txt}\nrootSize: 3GB\n", `x.yaml:6: rootSize: "3GB": write a size like 512MiB or 3GiB`},
		{"wrong kind", "apiVersion: provision/v1\nkind: Lab\nname: x\nbase: {path: b.img, sha256: \"" + strings.Repeat("a", 64) + "\"}\nboot: {config: c.txt}\n", `x.yaml:2: kind: "Lab" is not supported`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "c.txt"), []byte("x\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, "x.yaml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadDefinition(nil, p, dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v\nwant %q", err, tc.want)
			}
		})
	}
	if _, err := LoadDefinition(rpiDefs(t), "nope", "."); err == nil || !strings.Contains(err.Error(), "no definition images/rpi/nope.yaml (known: debian-pi4, raspios-trixie)") {
		t.Errorf("unknown name: %v", err)
	}
}
