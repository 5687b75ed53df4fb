package stages

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/remote"
	"github.com/fhlab/provision/internal/render"
	"github.com/fhlab/provision/internal/swarm"
	"github.com/fhlab/provision/internal/terraform"
	"github.com/fhlab/provision/internal/ui"
	"github.com/fhlab/provision/internal/vms"
)

// Terraform says how the vms stage runs terraform and reaches the Proxmox
// hosts for snippets.
type Terraform struct {
	Path       string // the `terraform` setting; "" searches PATH
	Mirror     string // provider mirror directory (the `terraform-mirror` setting)
	Install    bool   // --install-terraform: download terraform when none is found
	Prompt     ui.Prompt
	NoSnippets bool   // snippets are placed by other means (shared storage)
	KeyPath    string // SSH key for the Proxmox hosts; default the inventory's
	Settings   vms.Settings
}

// VMs creates the Proxmox VMs through Terraform: the module is written into
// <state-dir>/terraform, each VM's cloud-init goes to its host's snippets
// directory over SFTP, and exactly the shown plan is applied.
//
// When the plan restarts or replaces VMs that are swarm nodes (the
// provider reboots every running VM whose memory or cores changed, all at
// once), they are changed one failure domain at a time (see rollSteps)
// unless AllAtOnce, or without SSH to reach the swarm.
type VMs struct {
	Renderer  *render.Renderer
	TF        Terraform
	SSH       *Connector     // reaches the swarm for a rolling change (may be nil)
	Counter   *swarm.Counter // counts a roll's changing Engine API calls (may be nil)
	AllAtOnce bool           // apply the plan as terraform would, every VM at once
}

func (VMs) Name() string  { return "vms" }
func (VMs) Title() string { return "create Proxmox VMs with Terraform (snippets over SFTP)" }
func (VMs) Skip(env *pipeline.Env) (bool, string) {
	return skipWithout(env, inventory.KindVM, "the inventory has no proxmox.vms")
}

func (s VMs) session(ctx context.Context, env *pipeline.Env) (*vms.Session, error) {
	return vms.Prepare(ctx, env.Inventory, s.Renderer, vms.Options{
		StateDir: env.StateDir, TerraformPath: s.TF.Path, InstallTerraform: s.TF.Install,
		Mirror: s.TF.Mirror, Settings: s.TF.Settings, Log: env.Log,
	})
}

// Plan is terraform's plan, one line per VM. When terraform cannot plan
// (no terraform, no provider, no token), the plan says why and lists the
// VMs the state file does not know yet as to be created.
func (s VMs) Plan(ctx context.Context, env *pipeline.Env) (pipeline.Plan, error) {
	sess, err := s.session(ctx, env)
	var p *terraform.Plan
	if err == nil {
		p, err = sess.Runner.Plan(ctx, false)
	}
	if err != nil {
		if ctx.Err() != nil {
			return pipeline.Plan{}, err
		}
		return s.estimate(env, err), nil
	}
	var out pipeline.Plan
	for _, c := range vms.Changes(sess.Data, p) {
		out.Changes = append(out.Changes, pipeline.Change{Node: c.VM, Action: pipeline.Action(c.Action), Detail: c.Detail})
	}
	if !s.TF.NoSnippets {
		if _, err := s.dialer(env); err != nil {
			out.Notes = append(out.Notes, "the apply will stop before terraform: "+err.Error())
		}
	}
	return out, nil
}

func (s VMs) estimate(env *pipeline.Env, why error) pipeline.Plan {
	p := pipeline.Plan{Notes: []string{
		fmt.Sprintf("no terraform plan (%v); changes estimated from the state file", why),
	}}
	for _, n := range env.Inventory.Nodes {
		if n.Kind != inventory.KindVM {
			continue
		}
		a := pipeline.Create
		if env.State.Terraform["vms."+n.Name+".id"] != "" {
			a = pipeline.Keep
		}
		p.Changes = append(p.Changes, pipeline.Change{Node: n.Name, Action: a, Detail: "estimate"})
	}
	return p
}

// Run plans, prints the plan, asks (or takes --yes), uploads the snippets
// and applies exactly the plan shown; the outputs go into the state.
func (s VMs) Run(ctx context.Context, env *pipeline.Env) error {
	return s.Apply(ctx, env)
}

// Apply is Run, for the vms command.
func (s VMs) Apply(ctx context.Context, env *pipeline.Env) error {
	return s.apply(ctx, env, false, nil)
}

// Destroy destroys the VMs named (every VM of the lab when names is empty)
// with terraform (-target for the named ones), after showing the plan and
// asking, then removes their snippets from the Proxmox hosts.
func (s VMs) Destroy(ctx context.Context, env *pipeline.Env, names []string) error {
	return s.apply(ctx, env, true, names)
}

func (s VMs) apply(ctx context.Context, env *pipeline.Env, destroy bool, names []string) error {
	var dial vms.Dialer
	if !s.TF.NoSnippets {
		// The key is checked before terraform plans (a plan that cannot
		// be applied for want of a key is time lost), together with the
		// token, so both problems are reported at once.
		var keyErr error
		if dial, keyErr = s.dialer(env); keyErr != nil {
			return fmt.Errorf("%w; nothing was planned or changed", errors.Join(vms.CheckCredentials(env.Inventory, nil), keyErr))
		}
	}
	sess, p, changes, err := s.showPlan(ctx, env, destroy, names...)
	if err != nil {
		return err
	}
	if p.Empty() {
		if !destroy {
			if err := s.upload(ctx, env, sess.Data, dial); err != nil {
				return err
			}
		}
		if err := sess.Record(ctx, env.State); err != nil {
			return err
		}
		fmt.Fprintln(env.Out, vms.AppliedSummary(nil))
		if destroy {
			// The VMs are gone; snippets an earlier run left are not.
			return s.removeSnippets(ctx, env, sess.Data, names, dial)
		}
		return nil
	}
	var steps []rollStep
	if !destroy && !s.AllAtOnce && s.SSH != nil {
		if steps = rollSteps(env, changes); len(steps) > 0 {
			fmt.Fprintln(env.Out, describeRoll(steps))
		}
	}
	question := fmt.Sprintf("Apply this plan to the Proxmox VMs of lab %s?", env.Inventory.Lab.Metadata.Name)
	if destroy {
		question = fmt.Sprintf("DESTROY these VMs of lab %s?", env.Inventory.Lab.Metadata.Name)
	}
	if err := s.TF.Prompt.Confirm(ctx, question); err != nil {
		return err
	}
	if !destroy {
		if err := s.upload(ctx, env, sess.Data, dial); err != nil {
			return err
		}
	}
	var applyErr error
	if len(steps) > 0 {
		applyErr = s.applyRolling(ctx, env, sess, p, steps)
	} else {
		env.Status.Progress("applying the plan with terraform")
		applyErr = sess.Runner.Apply(ctx, p)
	}
	// Record what exists even after a partial apply.
	recErr := sess.Record(context.WithoutCancel(ctx), env.State)
	if applyErr != nil {
		return applyErr
	}
	if recErr != nil {
		return recErr
	}
	fmt.Fprintln(env.Out, vms.AppliedSummary(changes))
	if destroy {
		return s.removeSnippets(ctx, env, sess.Data, names, dial)
	}
	return nil
}

// ShowPlan prints terraform's plan per VM without changing anything.
func (s VMs) ShowPlan(ctx context.Context, env *pipeline.Env, destroy bool) error {
	_, _, _, err := s.showPlan(ctx, env, destroy)
	return err
}

// showPlan makes terraform's plan (to a file), of the VMs named only when
// names are given, and prints it per VM.
func (s VMs) showPlan(ctx context.Context, env *pipeline.Env, destroy bool, names ...string) (*vms.Session, *terraform.Plan, []vms.Change, error) {
	sess, err := s.session(ctx, env)
	if err != nil {
		return nil, nil, nil, err
	}
	targets := make([]string, len(names))
	for i, n := range names {
		targets[i] = vms.Address(n)
	}
	p, err := sess.Runner.Plan(ctx, destroy, targets...)
	if err != nil {
		return nil, nil, nil, err
	}
	changes := vms.Changes(sess.Data, p)
	vms.WriteSummary(env.Out, changes)
	return sess, p, changes, nil
}

// dialer loads the SSH key for the Proxmox hosts (--ssh-key, else the
// inventory's ssh.privateKeyFile) and returns how to reach them.
func (s VMs) dialer(env *pipeline.Env) (vms.Dialer, error) {
	inv := env.Inventory
	keyPath, from := s.TF.KeyPath, "--ssh-key"
	if keyPath == "" {
		keyPath, from = inv.PrivateKeyPath(), "the inventory's ssh.privateKeyFile"
	}
	signer, err := remote.LoadSigner(keyPath)
	if err != nil {
		return nil, fmt.Errorf("snippets: the SSH key for the Proxmox hosts (%s): %w — name a readable key with --ssh-key FILE (or ssh-key in provision.yaml), or pass --no-snippets when the snippets are on shared storage already", from, err)
	}
	return vms.SSHDialer(inv.Lab.Proxmox.SSHUser, remote.DefaultPort, remote.Config{
		Signer: signer, KnownHosts: remote.NewKnownHosts(filepath.Join(env.StateDir, "known_hosts")),
		Logger: env.Log,
	}), nil
}

// removeSnippets removes the destroyed VMs' snippets (every VM's when names
// is empty) from the Proxmox hosts.
func (s VMs) removeSnippets(ctx context.Context, env *pipeline.Env, d *vms.Data, names []string, dial vms.Dialer) error {
	if s.TF.NoSnippets {
		env.Status.Progress("snippets: left on the Proxmox hosts (--no-snippets)")
		return nil
	}
	rep, err := vms.RemoveSnippets(ctx, d, names, dial, env.Concurrency, env.Log)
	env.Status.Progress("snippets: %d removed, %d gone already, on %d Proxmox hosts", rep.Removed, rep.Absent, rep.Hosts)
	if err != nil {
		return fmt.Errorf("the VMs are destroyed, but not all their snippets were removed (run the destroy again to retry): %w", err)
	}
	return nil
}

func (s VMs) upload(ctx context.Context, env *pipeline.Env, d *vms.Data, dial vms.Dialer) error {
	if s.TF.NoSnippets {
		env.Status.Progress("snippets: not uploaded (--no-snippets)")
		return nil
	}
	rep, err := vms.UploadSnippets(ctx, d, dial, env.Concurrency, env.Log)
	env.Status.Progress("snippets: %d written, %d unchanged, on %d Proxmox hosts", rep.Written, rep.Unchanged, rep.Hosts)
	if err != nil {
		return errors.Join(errors.New("snippets upload failed; nothing was applied"), err)
	}
	return nil
}
