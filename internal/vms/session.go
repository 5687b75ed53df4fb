package vms

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/render"
	"github.com/fhlab/provision/internal/state"
	"github.com/fhlab/provision/internal/terraform"
	"github.com/fhlab/provision/internal/userfile"
	tfmodule "github.com/fhlab/provision/terraform"
)

// ResourceType and ResourceName are the module's VM resource.
const (
	ResourceType = "proxmox_vm_qemu"
	ResourceName = "vm"
)

// Options say where the module lives and how terraform is found and run.
type Options struct {
	StateDir         string // the module goes to <StateDir>/terraform
	TerraformPath    string // the `terraform` setting; "" searches PATH
	InstallTerraform bool   // download terraform into <StateDir>/bin when none is found
	Mirror           string // provider mirror directory (air-gapped labs)
	Settings         Settings
	// Getenv reads the API token variables; nil means os.Getenv.
	Getenv    func(string) string
	Log       *slog.Logger
	WaitDelay time.Duration // after SIGINT; 0: terraform.DefaultWaitDelay
}

// Session is a materialised module with an initialised terraform.
type Session struct {
	Data   *Data
	Runner *terraform.Runner
	Dir    string
}

// Prepare builds the data, writes the module into the state directory,
// finds terraform and runs init. The API token comes from the environment
// variables the inventory names and reaches terraform only through its
// environment.
func Prepare(ctx context.Context, inv *inventory.Inventory, r *render.Renderer, o Options) (*Session, error) {
	d, err := Build(inv, r, o.Settings)
	if err != nil {
		return nil, err
	}
	env, secrets, err := credentials(inv, o.Getenv)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(o.StateDir, ModuleDir)
	if _, err := Materialise(dir, tfmodule.FS, d); err != nil {
		return nil, err
	}
	exe, err := terraform.Find(ctx, terraform.FindOptions{
		Path: o.TerraformPath, Install: o.InstallTerraform, InstallDir: filepath.Join(o.StateDir, "bin"),
	})
	if err != nil {
		return nil, err
	}
	run, err := terraform.New(terraform.Config{
		Dir: dir, ExecPath: exe, Env: env, Secrets: secrets, Mirror: o.Mirror,
		Parallelism: d.TFVars.PMParallel, WaitDelay: o.WaitDelay, Log: o.Log,
	})
	if err != nil {
		return nil, err
	}
	if err := run.Init(ctx); err != nil {
		return nil, err
	}
	return &Session{Data: d, Runner: run, Dir: dir}, nil
}

// credentials reads the token from the variables the inventory names and
// gives it to terraform under the provider's names.
func credentials(inv *inventory.Inventory, getenv func(string) string) (map[string]string, []string, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	p := inv.Lab.Proxmox
	id, secret := getenv(p.TokenIDEnv), getenv(p.TokenSecretEnv)
	var missing []string
	if id == "" {
		missing = append(missing, "$"+p.TokenIDEnv)
	}
	if secret == "" {
		missing = append(missing, "$"+p.TokenSecretEnv)
	}
	if len(missing) > 0 {
		return nil, nil, fmt.Errorf("vms: the Proxmox API token is read from $%s and $%s; %s not set (export them; they are never read from a file)",
			p.TokenIDEnv, p.TokenSecretEnv, strings.Join(missing, " and "))
	}
	if err := inventory.CheckTokenID("$"+p.TokenIDEnv, id); err != nil {
		return nil, nil, fmt.Errorf("vms: %w", err)
	}
	env := map[string]string{"PM_API_TOKEN_ID": id, "PM_API_TOKEN_SECRET": secret}
	if p.CAFile != "" {
		// The provider has no CA setting; Go's TLS reads SSL_CERT_FILE.
		ca := inventory.ResolvePath(inv.Dir, p.CAFile)
		if err := userfile.Check(ca, userfile.MaxSmall); err != nil {
			return nil, nil, fmt.Errorf("vms: proxmox.caFile: %w", err)
		}
		env["SSL_CERT_FILE"] = ca
	}
	return env, []string{secret}, nil
}

// Change is one VM's line in a plan.
type Change struct {
	VM     string
	Host   string
	Action string // create, update, replace, destroy or unchanged
	Detail string
}

// Unchanged is the action of a VM the plan leaves alone.
const Unchanged = "unchanged"

// Changes turns a terraform plan into one line per VM, including the VMs it
// leaves alone; other resources are listed by address.
func Changes(d *Data, p *terraform.Plan) []Change {
	touched := map[string]bool{}
	var out []Change
	for _, c := range p.Changes {
		name := c.Address
		if c.Type == ResourceType && c.Name == ResourceName {
			name = c.Key
		}
		touched[name] = true
		ch := Change{VM: name, Action: string(c.Action)}
		if v, ok := d.TFVars.VMs[name]; ok {
			ch.Host = v.TargetNode
		}
		switch c.Action {
		case terraform.Replace:
			why := make([]string, len(c.Forcing))
			for i, f := range c.Forcing {
				why[i] = explain(f)
			}
			ch.Detail = "DESTROYED and created again (disk lost), forced by " + strings.Join(why, ", ")
		case terraform.Update:
			ch.Detail = "in place: " + strings.Join(c.Attrs, ", ")
		case terraform.Destroy:
			ch.Detail = "DESTROYED (disk lost)"
		case terraform.Create:
			if v, ok := d.TFVars.VMs[name]; ok {
				ch.Detail = fmt.Sprintf("vmid %d, %d cores, %d MiB, %s disk", v.VMID, v.Cores, v.Memory, v.DiskSize)
			}
		}
		out = append(out, ch)
	}
	if !p.Destroy {
		for _, vm := range d.VMs {
			if !touched[vm.Name] {
				out = append(out, Change{VM: vm.Name, Host: vm.Host.Name, Action: Unchanged})
			}
		}
	}
	return out
}

// explain says why an attribute forces a new VM.
func explain(attr string) string {
	switch attr {
	case "force_recreate_on_change_of":
		return "force_recreate_on_change_of (its cloud-init snippets changed)"
	case "cicustom":
		return "cicustom (snippet names changed)"
	case "clone":
		return "clone (another template)"
	case "vmid":
		return "vmid (another VMID)"
	}
	return attr
}

// WriteSummary prints a plan per VM; replacements and destructions loudly.
func WriteSummary(w io.Writer, changes []Change) {
	count := map[string]int{}
	for _, c := range changes {
		count[c.Action]++
	}
	fmt.Fprintf(w, "VMs: %d to create, %d to update, %d to REPLACE, %d to DESTROY, %d unchanged.\n",
		count["create"], count["update"], count["replace"], count["destroy"], count[Unchanged])
	sorted := append([]Change(nil), changes...)
	order := map[string]int{"destroy": 0, "replace": 1, "create": 2, "update": 3, Unchanged: 4}
	sort.SliceStable(sorted, func(i, j int) bool { return order[sorted[i].Action] < order[sorted[j].Action] })
	for _, c := range sorted {
		where := ""
		if c.Host != "" {
			where = " on " + c.Host
		}
		switch c.Action {
		case "replace", "destroy":
			fmt.Fprintf(w, "  !! %-9s %s%s: %s\n", strings.ToUpper(c.Action), c.VM, where, c.Detail)
		case Unchanged:
			fmt.Fprintf(w, "     %-9s %s%s\n", c.Action, c.VM, where)
		default:
			fmt.Fprintf(w, "     %-9s %s%s: %s\n", c.Action, c.VM, where, c.Detail)
		}
	}
	if n := count["replace"] + count["destroy"]; n > 0 {
		fmt.Fprintf(w, "WARNING: %d VM(s) will be DESTROYED; what is on their disks is lost.\n", n)
	}
}

// Record puts terraform's outputs into the state: all of them under
// Terraform, and each VM's address into its node facts.
func (s *Session) Record(ctx context.Context, st *state.State) error {
	outs, err := s.Runner.Output(ctx)
	if err != nil {
		return err
	}
	st.Terraform = outs
	for name := range s.Data.TFVars.VMs {
		if ip := outs["vms."+name+".ip"]; ip != "" {
			st.Node(name).IP = ip
		}
	}
	return nil
}
