package terraform

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/hc-install/fs"
	"github.com/hashicorp/hc-install/product"
	"github.com/hashicorp/hc-install/releases"
)

// FindOptions say where terraform may come from.
type FindOptions struct {
	// Path is a configured binary (the `terraform` setting); it must exist.
	Path string
	// Install allows downloading the latest terraform release (checksums
	// and signature verified by hc-install) into InstallDir when none is
	// found. Only when the admin asks (--install-terraform).
	Install    bool
	InstallDir string
}

// Find returns the terraform binary to use: the configured path, else one
// on PATH, else (only with Install) a freshly downloaded release.
func Find(ctx context.Context, o FindOptions) (string, error) {
	if o.Path != "" {
		abs, err := filepath.Abs(o.Path)
		if err != nil {
			return "", fmt.Errorf("find terraform %s: %w", o.Path, err)
		}
		src := &fs.AnyVersion{ExactBinPath: abs}
		p, err := src.Find(ctx)
		if err != nil {
			return "", fmt.Errorf("find terraform: the configured binary %s cannot be used: %w", abs, err)
		}
		return p, nil
	}
	src := &fs.AnyVersion{Product: &product.Terraform}
	p, err := src.Find(ctx)
	if err == nil {
		return p, nil
	}
	if ctx.Err() != nil {
		return "", fmt.Errorf("find terraform: %w", ctx.Err())
	}
	if !o.Install {
		return "", fmt.Errorf("find terraform: none on PATH (%w): install terraform, name it with --terraform PATH, or pass --install-terraform to download the latest release", err)
	}
	if o.InstallDir == "" {
		return "", errors.New("install terraform: no directory to install into")
	}
	if err := os.MkdirAll(o.InstallDir, 0o755); err != nil {
		return "", fmt.Errorf("install terraform into %s: %w", o.InstallDir, err)
	}
	rel := &releases.LatestVersion{Product: product.Terraform, InstallDir: o.InstallDir}
	p, err = rel.Install(ctx)
	if err != nil {
		return "", fmt.Errorf("install terraform into %s: %w", o.InstallDir, err)
	}
	return p, nil
}
