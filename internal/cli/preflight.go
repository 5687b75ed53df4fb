package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/preflight"
	"github.com/fhlab/provision/internal/proxmox"
)

const preflightLong = `Check the Proxmox cluster against the inventory before anything changes.
Read only: preflight never changes the cluster. The checks run concurrently:

  api         the API answers at proxmox.apiURL, and its version
  token       the token from $PM_API_TOKEN_ID / $PM_API_TOKEN_SECRET
              (names: proxmox.tokenIDEnv / tokenSecretEnv) authenticates
  privileges  the token has, on /, the Telmate provider's 20 privileges plus
              Datastore.AllocateTemplate, and the provider's own check will
              find its user in /access/users
  host        every host in proxmox.nodes is online
  clock       each host's clock against this machine's (warn at 2 s, fail
              at 30 s)
  template    proxmox.template is a template on every host that gets VMs
              (or on shared storage), with the hardware terraform/ declares:
              controller, BIOS, boot disk slot and storage, cloud-init
              drive, serial console; any undeclared disk fails, because the
              provider deletes it from every clone
  snippets    proxmox.snippetsStorage allows snippets on every host, and
              keeps them in proxmox.snippetsDir
  storage     proxmox.storage has room for the new VMs' disks
  vmids       no other guest uses an inventory VMID (the inventory's own
              VMs already existing is fine)
  ips         no other guest's ipconfig/net uses an inventory address

Every failure is printed with its fix. The exit status is 1 when a check
failed (warnings do not fail), 0 otherwise.`

func (a *app) preflightCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "preflight -i FILE",
		Short: "Check Proxmox before anything changes: hosts, template, storage, VMIDs, IPs, privileges, clocks",
		Long:  preflightLong,
		Example: `  export PM_API_TOKEN_ID='provision@pve!lab' PM_API_TOKEN_SECRET=...
  provision preflight -i lab.yaml
  provision preflight -i lab.yaml -o json | jq '.results[] | select(.ok == false)'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return exitError{2, fmt.Errorf("--output %q: use table or json", output)}
			}
			inv, err := a.loadInventory()
			if err != nil {
				return err
			}
			c, err := a.proxmoxClient(inv)
			if err != nil {
				return err
			}
			defer c.Close()
			rep, err := preflight.Run(cmd.Context(), preflight.Options{
				Client: c, Inventory: inv, Concurrency: a.settings.Concurrency, Now: a.now, Log: a.log,
			})
			if err != nil {
				return err
			}
			if output == "json" {
				err = rep.WriteJSON(a.streams.Out)
			} else {
				err = rep.WriteTable(a.streams.Out)
			}
			if err != nil {
				return err
			}
			if n := rep.Failed(); n > 0 {
				return fmt.Errorf("preflight: %s failed; fix them and run it again", plural(n, "check"))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return cmd
}

// proxmoxClient builds the API client from the inventory's proxmox section,
// with the token from the environment variables it names.
func (a *app) proxmoxClient(inv *inventory.Inventory) (*proxmox.Client, error) {
	p := inv.Lab.Proxmox
	if p == nil {
		return nil, exitError{2, fmt.Errorf("%s has no proxmox section", inv.File)}
	}
	id, secret := os.Getenv(p.TokenIDEnv), os.Getenv(p.TokenSecretEnv)
	if id == "" || secret == "" {
		return nil, exitError{2, fmt.Errorf("proxmox API token: set $%s (user@realm!tokenid) and $%s (its secret) in the environment; names from proxmox.tokenIDEnv/tokenSecretEnv in %s",
			p.TokenIDEnv, p.TokenSecretEnv, inv.File)}
	}
	if err := inventory.CheckTokenID("$"+p.TokenIDEnv, id); err != nil {
		return nil, exitError{2, fmt.Errorf("proxmox API token: %w", err)}
	}
	ca := ""
	if p.CAFile != "" {
		ca = inventory.ResolvePath(inv.Dir, p.CAFile)
	}
	c, err := proxmox.New(proxmox.Config{
		BaseURL: p.APIURL, TokenID: id, TokenSecret: secret, CAFile: ca, Insecure: p.Insecure,
		Timeout: a.settings.APITimeout, Log: a.log,
	})
	if err != nil {
		return nil, exitError{2, fmt.Errorf("%s: %w", inv.File, err)}
	}
	return c, nil
}
