package terraform

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/fhlab/provision/internal/state"
)

// CLIConfig is a terraform CLI configuration that installs the given
// providers from a filesystem mirror only (an air-gapped lab) and every
// other provider directly from its registry.
func CLIConfig(mirror string, providers []string) string {
	quoted := make([]string, len(providers))
	for i, p := range providers {
		quoted[i] = strconv.Quote(p)
	}
	list := strings.Join(quoted, ", ")
	var b strings.Builder
	b.WriteString("# Written by provision: providers from a local mirror (no download).\n")
	b.WriteString("provider_installation {\n")
	fmt.Fprintf(&b, "  filesystem_mirror {\n    path    = %s\n    include = [%s]\n  }\n", strconv.Quote(mirror), list)
	fmt.Fprintf(&b, "  direct {\n    exclude = [%s]\n  }\n", list)
	b.WriteString("}\n")
	return b.String()
}

// writeCLIConfig writes CLIConfigName into the working directory when a
// mirror is configured. The mirror must exist: init would otherwise fail
// with a less helpful message.
func (r *Runner) writeCLIConfig() error {
	if r.cfg.Mirror == "" {
		return nil
	}
	mirror, err := filepath.Abs(r.cfg.Mirror)
	if err != nil {
		return fmt.Errorf("terraform provider mirror %s: %w", r.cfg.Mirror, err)
	}
	if fi, err := os.Stat(mirror); err != nil {
		return fmt.Errorf("terraform provider mirror %s: %w", mirror, err)
	} else if !fi.IsDir() {
		return fmt.Errorf("terraform provider mirror %s: not a directory", mirror)
	}
	path := filepath.Join(r.cfg.Dir, CLIConfigName)
	if err := state.WriteFileAtomic(path, []byte(CLIConfig(mirror, r.cfg.MirrorProviders)), 0o600); err != nil {
		return fmt.Errorf("terraform CLI config: %w", err)
	}
	return nil
}
