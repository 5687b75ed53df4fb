package vms

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/fhlab/provision/internal/state"
)

// ModuleDir is the module's directory inside the state directory.
const ModuleDir = "terraform"

// Materialise writes the module's .tf files from module (terraform.FS) and
// the generated variables into dir, rewriting only files whose content
// changed, and removes .tf files the module no longer has. The directory is
// private to its owner (it will hold the Terraform state and plans). It
// returns the names of the files written.
func Materialise(dir string, module fs.FS, d *Data) ([]string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("write terraform module: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("write terraform module: %w", err)
	}
	want := map[string][]byte{}
	entries, err := fs.ReadDir(module, ".")
	if err != nil {
		return nil, fmt.Errorf("read embedded terraform module: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".tf") {
			continue
		}
		b, err := fs.ReadFile(module, e.Name())
		if err != nil {
			return nil, fmt.Errorf("read embedded terraform module: %w", err)
		}
		want[e.Name()] = b
	}
	if len(want) == 0 {
		return nil, errors.New("read embedded terraform module: no .tf files")
	}
	vars, err := d.JSON()
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", TFVarsFile, err)
	}
	want[TFVarsFile] = vars

	var written []string
	for name, content := range want {
		path := filepath.Join(dir, name)
		old, err := os.ReadFile(path)
		if err == nil && bytes.Equal(old, content) {
			continue
		}
		if err := state.WriteFileAtomic(path, content, 0o600); err != nil {
			return written, fmt.Errorf("write terraform module: %w", err)
		}
		written = append(written, name)
	}
	stale, _ := filepath.Glob(filepath.Join(dir, "*.tf"))
	for _, path := range stale {
		if _, ok := want[filepath.Base(path)]; !ok {
			if err := os.Remove(path); err != nil {
				return written, fmt.Errorf("remove stale %s: %w", path, err)
			}
		}
	}
	return written, nil
}
