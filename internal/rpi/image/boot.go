package image

import (
	"bytes"
	"fmt"
	"io/fs"
	"strings"
	"text/template"
)

// cgroupTokens turn on the memory cgroup, which the Raspberry Pi kernel
// leaves off (docker: "No memory limit support").
var cgroupTokens = []string{"cgroup_enable=memory", "cgroup_memory=1"}

// provisionMarker starts the lines provision adds to a base image's
// config.txt; a second customisation replaces them.
const provisionMarker = "# --- provision: added lines below ---"

// bootConfigData is what the config.txt and cmdline.txt templates see.
type bootConfigData struct {
	Kernel, Initramfs string // file names on the boot partition
	DiskID            string // 8 hex digits
	RootPARTUUID      string // <disk id>-02
	BootPARTUUID      string // <disk id>-01
}

func renderBootTemplate(def *Definition, name string, d bootConfigData) ([]byte, error) {
	text, err := fs.ReadFile(def.FS, name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", def.File, err)
	}
	t, err := template.New(name).Option("missingkey=error").Parse(string(text))
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", def.File, name, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", def.File, name, err)
	}
	return b.Bytes(), nil
}

// radioLines are the config.txt lines that turn the radios off.
func radioLines(r Radios) string {
	var b strings.Builder
	if !r.WiFi {
		b.WriteString("# radios.wifi: false\ndtoverlay=disable-wifi\n")
	}
	if !r.Bluetooth {
		b.WriteString("# radios.bluetooth: false\ndtoverlay=disable-bt\n")
	}
	return b.String()
}

// debianConfig is the whole config.txt of a Debian-built image.
func debianConfig(def *Definition, d bootConfigData) ([]byte, error) {
	b, err := renderBootTemplate(def, def.Boot.Config, d)
	if err != nil {
		return nil, err
	}
	if r := radioLines(def.Radios); r != "" {
		b = append(withNewline(b), "[all]\n"+r...)
	}
	return b, nil
}

// baseConfig is a base image's config.txt with the definition's lines and
// the radio overlays added at the end (replacing what an earlier
// customisation added).
func baseConfig(def *Definition, old []byte) ([]byte, error) {
	add, err := renderBootTemplate(def, def.Boot.Config, bootConfigData{})
	if err != nil {
		return nil, err
	}
	if i := bytes.Index(old, []byte(provisionMarker)); i >= 0 {
		old = old[:i]
	}
	var b bytes.Buffer
	b.Write(withNewline(old))
	b.WriteString(provisionMarker + "\n")
	b.Write(withNewline(add))
	b.WriteString("[all]\n" + radioLines(def.Radios))
	return b.Bytes(), nil
}

// withTokens appends the tokens cmdline lacks; cmdline.txt stays one line.
func withTokens(cmdline string, tokens ...string) string {
	have := map[string]bool{}
	fields := strings.Fields(cmdline)
	for _, f := range fields {
		have[f] = true
	}
	for _, t := range tokens {
		if !have[t] {
			fields = append(fields, t)
			have[t] = true
		}
	}
	return strings.Join(fields, " ")
}

// withoutTokens drops tokens starting with any of the prefixes.
func withoutTokens(cmdline string, prefixes ...string) string {
	var out []string
	for _, f := range strings.Fields(cmdline) {
		drop := false
		for _, p := range prefixes {
			if strings.HasPrefix(f, p) {
				drop = true
			}
		}
		if !drop {
			out = append(out, f)
		}
	}
	return strings.Join(out, " ")
}

func withNewline(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] != '\n' {
		return append(b, '\n')
	}
	return b
}
