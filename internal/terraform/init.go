package terraform

import (
	"context"
	"fmt"
	"strings"

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
		err = r.fail("init", err)
		if r.cfg.Mirror == "" && strings.Contains(err.Error(), "registry.terraform.io") {
			return fmt.Errorf("%w\nno provider mirror is configured and the registry cannot be reached: on a machine with internet run `terraform providers mirror DIR` in a copy of terraform/, bring DIR here and pass --terraform-mirror DIR (or set PROVISION_TERRAFORM_MIRROR)", err)
		}
		return err
	}
	return nil
}
