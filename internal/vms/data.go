// Package vms turns the inventory and each VM's rendered cloud-init into
// what the Terraform module in terraform/ needs: the generated
// vms.auto.tfvars.json, the snippet files it references, and the module
// itself materialised in the state directory. It uploads the snippets to
// the Proxmox hosts over SFTP and drives Terraform (internal/terraform) to
// plan, apply and destroy the VMs.
package vms

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strings"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/proxmox"
	"github.com/fhlab/provision/internal/remote"
	"github.com/fhlab/provision/internal/render"
)

// TFVarsFile is the generated variables file next to the module.
const TFVarsFile = "vms.auto.tfvars.json"

// Defaults for the provider settings the inventory does not hold.
const (
	DefaultParallel       = 4
	DefaultTimeout        = 600
	DefaultCloneWait      = 2
	DefaultAdditionalWait = 2
)

// The snippet kinds and their file name suffixes (<lab>-<node>-user.yaml,
// ...), in the order PVE prints cicustom's keys (alphabetical), so the
// value reads back unchanged.
var snippetKinds = []struct{ kind, suffix, seed string }{
	{"meta", "-meta.yaml", render.MetaData},
	{"network", "-network.yaml", render.NetworkConfig},
	{"user", "-user.yaml", render.UserData},
}

// SnippetMode is the mode of uploaded snippets: user-data may hold keys.
const SnippetMode = 0o600

// Hardware is var.hardware: the template's hardware, declared for every clone.
type Hardware struct {
	SCSIHW           string `json:"scsihw"`
	BIOS             string `json:"bios"`
	Boot             string `json:"boot"`
	QemuOS           string `json:"qemu_os"`
	Agent            int    `json:"agent"`
	NetModel         string `json:"net_model"`
	Serial0          string `json:"serial0"`
	VGA              string `json:"vga"`
	CloudInitStorage string `json:"cloudinit_storage"`
}

// VMVars is one entry of var.vms.
type VMVars struct {
	VMID        int      `json:"vmid"`
	TargetNode  string   `json:"target_node"`
	Role        string   `json:"role"`
	Cores       int      `json:"cores"`
	Memory      int      `json:"memory"`
	DiskSize    string   `json:"disk_size"`
	DiskStorage string   `json:"disk_storage"`
	Bridge      string   `json:"bridge"`
	IPConfig0   string   `json:"ipconfig0"`
	Nameserver  string   `json:"nameserver"`
	CICustom    string   `json:"cicustom"`
	SnippetsSHA string   `json:"snippets_sha"`
	Tags        []string `json:"tags"`
}

// TFVars is the content of vms.auto.tfvars.json.
type TFVars struct {
	PMAPIURL       string            `json:"pm_api_url"`
	PMTLSInsecure  bool              `json:"pm_tls_insecure"`
	PMParallel     int               `json:"pm_parallel"`
	PMTimeout      int               `json:"pm_timeout"`
	Lab            string            `json:"lab"`
	Template       string            `json:"template"`
	CloneWait      int               `json:"clone_wait"`
	AdditionalWait int               `json:"additional_wait"`
	Hardware       Hardware          `json:"hardware"`
	VMs            map[string]VMVars `json:"vms"`
}

// VM is one VM with its snippets.
type VM struct {
	Name     string
	Host     inventory.ProxmoxNode // where it runs and its snippets go
	Snippets []remote.File
}

// Data is everything generated for the module.
type Data struct {
	TFVars      TFVars
	VMs         []VM   // by name
	SnippetsDir string // on every host
}

// Settings tune the generated provider settings.
type Settings struct {
	Parallel       int // pm_parallel; 0: DefaultParallel
	CloneWait      *int
	AdditionalWait *int
}

var (
	diskSizeRE = regexp.MustCompile(`^[1-9][0-9]*[KMGT]?$`)
	cicustomRE = regexp.MustCompile(`^[a-zA-Z0-9 _/.,=:-]+$`)
	tagBadRE   = regexp.MustCompile(`[^a-zA-Z0-9_.-]`)
)

// Build renders every VM's snippets and the module's variables. It fails,
// naming the VM, on anything the provider or Proxmox would reject, and when
// two managers share a Proxmox host (one host down would cost two votes).
func Build(inv *inventory.Inventory, r *render.Renderer, s Settings) (*Data, error) {
	p := inv.Lab.Proxmox
	if p == nil {
		return nil, errors.New("vms: the inventory has no proxmox section")
	}
	hw := proxmox.LabHardware(p)
	if hw.DiskSlot != "scsi0" || hw.CloudInitSlot != "ide2" {
		return nil, fmt.Errorf("vms: the template's disks are on %s and %s, but terraform/main.tf declares scsi0 and ide2", hw.DiskSlot, hw.CloudInitSlot)
	}
	agent := 0
	if hw.Agent {
		agent = 1
	}
	prefix, err := netip.ParsePrefix(inv.Lab.Network.CIDR)
	if err != nil {
		return nil, fmt.Errorf("vms: network.cidr %q: %w", inv.Lab.Network.CIDR, err)
	}
	hosts := map[string]inventory.ProxmoxNode{}
	for _, h := range p.Nodes {
		hosts[h.Name] = h
	}
	d := &Data{
		SnippetsDir: p.SnippetsDir,
		TFVars: TFVars{
			PMAPIURL: p.APIURL, PMTLSInsecure: p.Insecure,
			PMParallel: orDefault(s.Parallel, DefaultParallel), PMTimeout: DefaultTimeout,
			Lab: inv.Lab.Metadata.Name, Template: p.Template,
			CloneWait: DefaultCloneWait, AdditionalWait: DefaultAdditionalWait,
			Hardware: Hardware{
				SCSIHW: hw.SCSIHW, BIOS: hw.BIOS, Boot: hw.Boot, QemuOS: hw.OSType, Agent: agent,
				NetModel: hw.NetModel, Serial0: hw.Serial0, VGA: hw.VGA, CloudInitStorage: hw.CloudInitStorage,
			},
			VMs: map[string]VMVars{},
		},
	}
	if s.CloneWait != nil {
		d.TFVars.CloneWait = *s.CloneWait
	}
	if s.AdditionalWait != nil {
		d.TFVars.AdditionalWait = *s.AdditionalWait
	}
	if !strings.HasSuffix(p.APIURL, "/api2/json") {
		return nil, fmt.Errorf("vms: proxmox.apiURL %q must end in /api2/json", p.APIURL)
	}
	managers := map[string]string{} // host -> first manager on it
	for i := range inv.Nodes {
		n := &inv.Nodes[i]
		if n.Kind != inventory.KindVM {
			continue
		}
		vm, vars, err := buildVM(inv, r, n, hosts, hw, prefix)
		if err != nil {
			return nil, fmt.Errorf("vms: %s: %w", n.Name, err)
		}
		if n.Role == inventory.Manager {
			if other, ok := managers[n.Host]; ok {
				return nil, fmt.Errorf("vms: managers %s and %s are both on Proxmox host %s: losing that host would cost two votes; spread them with proxmox.vms[].hosts", other, n.Name, n.Host)
			}
			managers[n.Host] = n.Name
		}
		d.VMs = append(d.VMs, vm)
		d.TFVars.VMs[n.Name] = vars
	}
	sort.Slice(d.VMs, func(i, j int) bool { return d.VMs[i].Name < d.VMs[j].Name })
	return d, nil
}

func buildVM(inv *inventory.Inventory, r *render.Renderer, n *inventory.Node, hosts map[string]inventory.ProxmoxNode, hw proxmox.Hardware, prefix netip.Prefix) (VM, VMVars, error) {
	p := inv.Lab.Proxmox
	host, ok := hosts[n.Host]
	if !ok {
		return VM{}, VMVars{}, fmt.Errorf("Proxmox host %q is not in proxmox.nodes", n.Host)
	}
	if !diskSizeRE.MatchString(n.Disk) {
		return VM{}, VMVars{}, fmt.Errorf("disk size %q: use a number with an optional K, M, G or T suffix, e.g. 32G", n.Disk)
	}
	if n.VMID < 100 || n.VMID > 999999999 {
		return VM{}, VMVars{}, fmt.Errorf("vmid %d is outside 100..999999999", n.VMID)
	}
	files, err := r.Node(inv, n)
	if err != nil {
		return VM{}, VMVars{}, err
	}
	byName := files.ByName()
	vm := VM{Name: n.Name, Host: host}
	sum := sha256.New()
	var parts []string
	for _, k := range snippetKinds {
		name := SnippetName(inv.Lab.Metadata.Name, n.Name, k.suffix)
		content := byName[k.seed]
		vm.Snippets = append(vm.Snippets, remote.File{Name: name, Content: content, Mode: SnippetMode})
		parts = append(parts, fmt.Sprintf("%s=%s:snippets/%s", k.kind, p.SnippetsStorage, name))
		fmt.Fprintf(sum, "%s\x00%d\x00", name, len(content))
		sum.Write(content)
	}
	cicustom := strings.Join(parts, ",")
	if len(cicustom) > 256 || !cicustomRE.MatchString(cicustom) {
		return VM{}, VMVars{}, fmt.Errorf("cicustom %q: Proxmox allows at most 256 characters of letters, digits, space, _-/.", cicustom)
	}
	ipconfig := fmt.Sprintf("ip=%s/%d", n.IP, prefix.Bits())
	if gw := inv.Lab.Network.Gateway; gw != "" {
		ipconfig += ",gw=" + gw
	}
	return vm, VMVars{
		VMID: n.VMID, TargetNode: n.Host, Role: n.Role,
		Cores: n.Cores, Memory: n.Memory,
		DiskSize: n.Disk, DiskStorage: hw.DiskStorage, Bridge: hw.Bridge,
		IPConfig0: ipconfig, Nameserver: strings.Join(inv.Lab.Network.DNS, " "),
		CICustom: cicustom, SnippetsSHA: hex.EncodeToString(sum.Sum(nil)),
		Tags: Tags(inv.Lab.Metadata.Name, n.Role, n.Kind),
	}, nil
}

// SnippetName is a snippet's file name: <lab>-<node><suffix>.
func SnippetName(lab, node, suffix string) string { return lab + "-" + node + suffix }

// Tags are the VM's Proxmox tags, made valid for PVE
// (^[a-zA-Z0-9_][a-zA-Z0-9-._]*$), sorted as PVE stores them, no duplicates.
func Tags(values ...string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range values {
		t := tagBadRE.ReplaceAllString(strings.ToLower(v), "-")
		t = strings.TrimLeft(t, "-.")
		if t == "" || seen[t] {
			continue
		}
		seen[t] = true
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// JSON is the tfvars file's content, stable for equal data.
func (d *Data) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(d.TFVars, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}
