// Package stages adapts the domain packages to the pipeline: one file per
// stage, in the order of the runbook.
package stages

import (
	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/render"
	"github.com/fhlab/provision/internal/swarm"
)

// Deps are the dependencies the stages need, built once by the CLI.
type Deps struct {
	Renderer   *render.Renderer
	SSH        *Connector
	ForceSwarm bool
	// ForceHosts and AllowReboot are the hosts stage's --force and
	// --allow-reboot.
	ForceHosts  bool
	AllowReboot bool
	Terraform   Terraform
	// Netboot is how the pi-boot stage serves the netbooted Pis (apply's
	// --netboot-listen, --netboot-dhcp, --netboot-dhcp-interface,
	// --netboot-image).
	Netboot PiBoot
	// VerifyImage is the verify stage's test service image (apply's
	// --verify-image).
	VerifyImage string
	// Engines counts the Engine API calls that change something, on every
	// node (may be nil).
	Engines *swarm.Counter
	// AllAtOnce is apply's --all-at-once: VMs that are swarm nodes are
	// restarted as terraform does it, not one failure domain at a time.
	AllAtOnce bool
}

// Apply is the runbook `provision apply` follows, kept as data:
//
//	validate → render → vms → pi-image → pi-boot → discover → hosts → swarm → verify
func Apply(d Deps) pipeline.Pipeline {
	return pipeline.Pipeline{Stages: []pipeline.Stage{
		Validate{},
		Render{Renderer: d.Renderer},
		VMs{Renderer: d.Renderer, TF: d.Terraform, SSH: d.SSH, Counter: d.Engines, AllAtOnce: d.AllAtOnce},
		PiImage{Renderer: d.Renderer},
		PiBoot{Renderer: d.Renderer, Listen: d.Netboot.Listen, DHCP: d.Netboot.DHCP, DHCPIf: d.Netboot.DHCPIf, Image: d.Netboot.Image, UnitActive: d.Netboot.UnitActive},
		Discover{SSH: d.SSH},
		Hosts{Renderer: d.Renderer, SSH: d.SSH, Force: d.ForceHosts, AllowReboot: d.AllowReboot},
		Swarm{SSH: d.SSH, Force: d.ForceSwarm, Counter: d.Engines},
		Verify{SSH: d.SSH, Image: d.VerifyImage, Counter: d.Engines},
	}}
}
