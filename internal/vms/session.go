package vms

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
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
	// Absolute: terraform runs inside dir and gets paths under it.
	dir, err := filepath.Abs(filepath.Join(o.StateDir, ModuleDir))
	if err != nil {
		return nil, fmt.Errorf("vms: state directory %s: %w", o.StateDir, err)
	}
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

// CheckCredentials reports what Prepare would find wrong with the API
// token in the environment (getenv; nil means os.Getenv), without running
// anything.
func CheckCredentials(inv *inventory.Inventory, getenv func(string) string) error {
	_, _, err := credentials(inv, getenv)
	return err
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

// Address is the terraform address of a VM's resource, for -target:
// proxmox_vm_qemu.vm["mgr-1"].
func Address(vm string) string {
	return fmt.Sprintf("%s.%s[%q]", ResourceType, ResourceName, vm)
}
