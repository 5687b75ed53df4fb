package terraform

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/terraform-exec/tfexec"
)

// Apply applies exactly the saved plan p (terraform refuses a plan whose
// state has changed since). The plan file is removed afterwards, applied or
// not, so it can never be applied twice.
func (r *Runner) Apply(ctx context.Context, p *Plan) error {
	if p == nil || p.File == "" {
		return fmt.Errorf("terraform apply in %s: no saved plan", r.cfg.Dir)
	}
	if _, err := os.Stat(p.File); err != nil {
		return fmt.Errorf("terraform apply in %s: saved plan: %w", r.cfg.Dir, err)
	}
	defer os.Remove(p.File)
	opts := []tfexec.ApplyOption{tfexec.DirOrPlan(p.File)}
	if r.cfg.Parallelism > 0 {
		opts = append(opts, tfexec.Parallelism(r.cfg.Parallelism))
	}
	err := r.tf.Apply(ctx, opts...)
	r.flush()
	r.protectState()
	if err != nil {
		cmd := "apply"
		if p.Destroy {
			cmd = "apply (destroy)"
		}
		return r.fail(cmd, err)
	}
	return nil
}

// protectState makes the state files readable by their owner only: they
// hold no secret, but they do describe the whole lab.
func (r *Runner) protectState() {
	for _, name := range []string{"terraform.tfstate", "terraform.tfstate.backup"} {
		os.Chmod(filepath.Join(r.cfg.Dir, name), 0o600)
	}
}
