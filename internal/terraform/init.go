package terraform

import (
	"context"

	"github.com/hashicorp/terraform-exec/tfexec"
)

// Init runs `terraform init` (no upgrade: the lock file pins the providers),
// with the mirror's CLI configuration when one is configured.
func (r *Runner) Init(ctx context.Context) error {
	if err := r.writeCLIConfig(); err != nil {
		return err
	}
	defer r.flush()
	if err := r.tf.Init(ctx, tfexec.Upgrade(false)); err != nil {
		return r.fail("init", err)
	}
	return nil
}
