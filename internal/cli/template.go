package cli

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/fhlab/provision/internal/proxmox"
)

const templateLong = `Make sure the cloud-init template named proxmox.template exists on every
host in proxmox.nodes. For each host that lacks it, concurrently:

  1. the cloud image is fetched by the host itself through the API's
     download-url into --image-storage as import content, with its SHA-512
     checked by Proxmox (skipped when the file is already there);
  2. a VM is created from it with import-from: the hardware terraform/
     declares for every clone (virtio-scsi-single, SeaBIOS, boot disk scsi0
     on proxmox.storage, cloud-init drive ide2, serial console, guest agent,
     virtio NIC on proxmox.bridge);
  3. the VM is converted to a template.

Host i (in proxmox.nodes order) gets VMID --vmid + i, checked free first.
The plan is printed before anything changes; a host that already has the
template is left alone, so a second run changes nothing and says so.

The default image is Debian 12's generic cloud image; its checksum is read
from the SHA512SUMS file beside it unless --sha512 is given, and only when a
host will really download it: --dry-run, and a run where every host has the
template or the image, need no network beyond the Proxmox API. Needs Proxmox VE
8.3 or later (import content) and Datastore.AllocateTemplate, Sys.Audit and
Sys.Modify for the token.`

func (a *app) templateCommand() *cobra.Command {
	var (
		vmid         int
		imageURL     string
		sha512       string
		imageStorage string
		timeout      time.Duration
		dryRun       bool
	)
	cmd := &cobra.Command{
		Use:   "template -i FILE",
		Short: "Make sure the cloud-init template exists on every Proxmox host",
		Long:  templateLong,
		Example: `  provision template -i lab.yaml
  provision template -i lab.yaml --dry-run
  provision template -i lab.yaml --vmid 9100 --image-storage local \
      --image-url https://mirror.lab/debian-12-genericcloud-amd64.qcow2 --sha512 <128 hex digits>`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			inv, err := a.loadInventory()
			if err != nil {
				return err
			}
			p := inv.Lab.Proxmox
			if p == nil {
				return exitError{2, fmt.Errorf("%s has no proxmox section", inv.File)}
			}
			if p.Template == "" {
				return exitError{2, fmt.Errorf("%s: set proxmox.template, the name of the template to make", inv.File)}
			}
			c, err := a.proxmoxClient(inv)
			if err != nil {
				return err
			}
			defer c.Close()
			spec := proxmox.TemplateSpec{
				Name: p.Template, Hardware: proxmox.LabHardware(p), VMIDBase: vmid,
				ImageURL: imageURL, ImageSHA512: sha512, ImageStorage: imageStorage,
				TaskTimeout: timeout, Concurrency: a.settings.Concurrency,
			}
			for _, n := range p.Nodes {
				spec.Nodes = append(spec.Nodes, n.Name)
			}
			steps, err := proxmox.PlanTemplates(ctx, c, spec)
			if err != nil {
				return err
			}
			out := a.streams.Out
			fmt.Fprintf(out, "template %s (image %s):\n", p.Template, imageURL)
			todo, problems := 0, 0
			for _, st := range steps {
				fmt.Fprintf(out, "  %-12s %s\n", st.Node, st)
				switch {
				case st.Problem != nil:
					problems++
				case !st.Exists:
					todo++
				}
			}
			if problems > 0 {
				return fmt.Errorf("template: %s cannot be done (see above); nothing was changed", plural(problems, "host"))
			}
			if todo == 0 {
				fmt.Fprintf(out, "nothing to do: every host has template %s\n", p.Template)
				return nil
			}
			if dryRun {
				fmt.Fprintf(out, "dry run: %s would get the template\n", plural(todo, "host"))
				return nil
			}
			// The checksum is fetched only now: a dry run, or a run where
			// every host has the template or the image, needs no network.
			if spec.ImageSHA512 == "" && proxmox.NeedsDownload(steps) {
				fmt.Fprintf(a.streams.Err, "reading the image's checksum from SHA512SUMS beside %s\n", imageURL)
				hc := &http.Client{Timeout: 30 * time.Second}
				if spec.ImageSHA512, err = proxmox.FetchSHA512(ctx, hc, imageURL); err != nil {
					return err
				}
			}
			var mu sync.Mutex
			progress := func(node, msg string) {
				mu.Lock()
				defer mu.Unlock()
				a.status.Progress("%s: %s", node, msg)
			}
			if err := proxmox.ApplyTemplates(ctx, c, spec, steps, progress); err != nil {
				return err
			}
			fmt.Fprintf(out, "template %s made on %s\n", p.Template, plural(todo, "host"))
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&vmid, "vmid", 9000, "VMID of the first host's template; host i gets VMID+i")
	f.StringVar(&imageURL, "image-url", proxmox.DefaultImageURL, "cloud image to make the template from (.qcow2, .raw or .vmdk)")
	f.StringVar(&sha512, "sha512", "", "the image's SHA-512 (default: read from SHA512SUMS beside --image-url)")
	f.StringVar(&imageStorage, "image-storage", "local", "storage that keeps the image as import content")
	f.DurationVar(&timeout, "task-timeout", 20*time.Minute, "longest wait for one Proxmox task (download, create, convert)")
	f.BoolVar(&dryRun, "dry-run", false, "print the plan and change nothing")
	return cmd
}
