// Package inventory reads, defaults, expands and validates the one file a lab
// admin edits: a versioned description of the network, the swarm, the host
// tuning, the Proxmox VMs and the Raspberry Pi racks.
//
// The flow is Load (strict decode with line numbers) → SetDefaults → Expand
// (groups and racks become nodes) → Validate (every problem at once).
package inventory

// APIVersion and Kind identify the only schema this package reads.
const (
	APIVersion = "provision/v1"
	Kind       = "Lab"
)

// Lab is the inventory file as written by the admin.
type Lab struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   Metadata   `yaml:"metadata"`
	Network    Network    `yaml:"network"`
	SSH        SSH        `yaml:"ssh"`
	Swarm      Swarm      `yaml:"swarm"`
	HostTuning HostTuning `yaml:"hostTuning"`
	Proxmox    *Proxmox   `yaml:"proxmox"`
	Pis        *Pis       `yaml:"pis"`
	// Hosts are existing machines (bring your own node): provision installs
	// Docker and the host tuning over SSH and joins them to the swarm.
	Hosts []Host `yaml:"hosts"`
	// Mirror is the lab's own apt repository (`provision mirror build`,
	// `provision mirror serve`); hosts install their packages from it.
	Mirror *Mirror `yaml:"mirror"`
}

// Mirror is where the lab's apt repository is kept and served.
type Mirror struct {
	// URL is how nodes reach `provision mirror serve` (http://ADDR:PORT/).
	URL string `yaml:"url"`
	// Dir holds the repository and its signing key (relative to the
	// inventory; default <state-dir>/mirror).
	Dir string `yaml:"dir"`
	// Nodes: VMs and Pis use the mirror too: their seeds write its apt
	// source and key (the golden image stays the same for every lab), and
	// `mirror build` includes their architectures.
	Nodes bool `yaml:"nodes"`
}

// Host is one existing machine provision reaches over SSH.
type Host struct {
	Name    string `yaml:"name"`
	Address string `yaml:"address"`
	// SSHUser and SSHPort default to ssh.user and ssh.port; the user is
	// root or may use sudo without a password.
	SSHUser string            `yaml:"sshUser"`
	SSHPort int               `yaml:"sshPort"`
	Role    string            `yaml:"role"`
	Arch    string            `yaml:"arch"` // Debian architecture: amd64 (default) or arm64
	Labels  map[string]string `yaml:"labels"`
}

// Metadata names the lab.
type Metadata struct {
	Name string `yaml:"name"`
}

// Network is the lab LAN every node sits on.
type Network struct {
	CIDR    string   `yaml:"cidr"`
	Gateway string   `yaml:"gateway"`
	DNS     []string `yaml:"dns"`
	Domain  string   `yaml:"domain"`
	NTP     []string `yaml:"ntp"`
}

// SSH is how provision reaches nodes and which keys nodes accept.
type SSH struct {
	User           string   `yaml:"user"`
	AuthorizedKeys []string `yaml:"authorizedKeys"`
	// AuthorizedKeyFiles are public key files (relative to the inventory's
	// directory) whose lines are added to AuthorizedKeys when loading.
	AuthorizedKeyFiles []string `yaml:"authorizedKeyFiles"`
	PrivateKeyFile     string   `yaml:"privateKeyFile"`
	// CreateKey lets provision create PrivateKeyFile (ed25519) when it does
	// not exist; its public half is then trusted by every node. Handy for
	// the emulated lab and for a brand-new lab.
	CreateKey bool `yaml:"createKey"`
	Port      int  `yaml:"port"`
}

// Swarm holds the settings that can only be chosen at `swarm init`.
type Swarm struct {
	DefaultAddrPool           []string `yaml:"defaultAddrPool"`
	DefaultAddrPoolMaskLength int      `yaml:"defaultAddrPoolMaskLength"`
	Managers                  int      `yaml:"managers"`
	DrainManagers             bool     `yaml:"drainManagers"`
	Ingress                   Ingress  `yaml:"ingress"`
}

// Ingress is the swarm's routing-mesh network. Docker creates one at init
// (10.0.0.0/24 or the first subnet of the pool); provision can remove it
// (no routing mesh: publish ports in host mode) or give it a subnet of its
// own, before any worker joins.
type Ingress struct {
	Enabled *bool  `yaml:"enabled"` // default true
	Subnet  string `yaml:"subnet"`  // default: Docker's choice
}

// On reports whether the swarm should have an ingress network.
func (i Ingress) On() bool { return i.Enabled == nil || *i.Enabled }

// HostTuning is baked into every node, VM or Pi.
type HostTuning struct {
	Sysctls    map[string]string `yaml:"sysctls"`
	Keepalive  Keepalive         `yaml:"keepalive"`
	Neighbour  Neighbour         `yaml:"neighbour"`
	IPVS       IPVS              `yaml:"ipvs"`
	LinkPolicy LinkPolicy        `yaml:"linkPolicy"`
	Docker     Docker            `yaml:"docker"`
	Firewall   Firewall          `yaml:"firewall"`
	Limits     Limits            `yaml:"limits"`
	Zram       Zram              `yaml:"zram"`
	Timezone   string            `yaml:"timezone"`
	ExtraPkgs  []string          `yaml:"extraPackages"`
}

// Keepalive keeps idle TCP connections alive below the IPVS expiry (900 s).
type Keepalive struct {
	Time     int `yaml:"time"`
	Interval int `yaml:"interval"`
	Probes   int `yaml:"probes"`
}

// Neighbour sets the ARP table garbage-collection thresholds.
type Neighbour struct {
	GCThresh1 int `yaml:"gcThresh1"`
	GCThresh2 int `yaml:"gcThresh2"`
	GCThresh3 int `yaml:"gcThresh3"`
}

// IPVS raises the load balancer's idle timeout in every docker netns.
type IPVS struct {
	TCPTimeout int    `yaml:"tcpTimeout"`
	Interval   string `yaml:"interval"`
}

// LinkPolicy is the systemd .link MACAddressPolicy for docker's devices.
type LinkPolicy struct {
	MACAddressPolicy string   `yaml:"macAddressPolicy"`
	Drivers          []string `yaml:"drivers"`
}

// Docker configures the engine on every node.
type Docker struct {
	Package      string        `yaml:"package"`
	LogDriver    string        `yaml:"logDriver"`
	LogMaxSize   string        `yaml:"logMaxSize"`
	LogMaxFile   int           `yaml:"logMaxFile"`
	TasksMax     string        `yaml:"tasksMax"`
	LimitNPROC   string        `yaml:"limitNPROC"`
	LimitNOFILE  string        `yaml:"limitNOFILE"`
	AddressPools []AddressPool `yaml:"addressPools"`
}

// AddressPool is one entry of daemon.json default-address-pools (bridges).
type AddressPool struct {
	Base string `yaml:"base"`
	Size int    `yaml:"size"`
}

// Firewall opens the swarm ports when a host firewall is enabled.
type Firewall struct {
	Enabled bool `yaml:"enabled"`
}

// Limits are kernel-wide limits for thousands of containers.
type Limits struct {
	PIDMax              int `yaml:"pidMax"`
	InotifyMaxWatches   int `yaml:"inotifyMaxUserWatches"`
	InotifyMaxInstances int `yaml:"inotifyMaxUserInstances"`
	FileMax             int `yaml:"fileMax"`
}

// Zram is compressed swap for the Pis.
type Zram struct {
	Percent   int    `yaml:"percent"`
	Algorithm string `yaml:"algorithm"`
}

// Proxmox describes the VM side of the lab.
type Proxmox struct {
	APIURL          string        `yaml:"apiURL"`
	TokenIDEnv      string        `yaml:"tokenIDEnv"`
	TokenSecretEnv  string        `yaml:"tokenSecretEnv"`
	Insecure        bool          `yaml:"insecure"`
	CAFile          string        `yaml:"caFile"`
	Nodes           []ProxmoxNode `yaml:"nodes"`
	Template        string        `yaml:"template"`
	Storage         string        `yaml:"storage"`
	SnippetsStorage string        `yaml:"snippetsStorage"`
	SnippetsDir     string        `yaml:"snippetsDir"`
	Bridge          string        `yaml:"bridge"`
	VMIDStart       int           `yaml:"vmidStart"`
	VMs             []VMGroup     `yaml:"vms"`
	// SSHUser is who provision logs in as on the Proxmox hosts to upload
	// snippets over SFTP (default root).
	SSHUser string `yaml:"sshUser"`
}

// ProxmoxNode is one Proxmox VE host.
type ProxmoxNode struct {
	Name    string `yaml:"name"`
	Address string `yaml:"address"`
	// SSHPort is the port of the host's sshd, where snippets are uploaded
	// (1-65535; 0 when left out, which means 22).
	SSHPort int `yaml:"sshPort"`
}

// VMGroup expands into Count VMs named by the Name pattern.
type VMGroup struct {
	Name      string            `yaml:"name"`
	Count     int               `yaml:"count"`
	Role      string            `yaml:"role"`
	Cores     int               `yaml:"cores"`
	Memory    int               `yaml:"memory"`
	Disk      string            `yaml:"disk"`
	IPStart   string            `yaml:"ipStart"`
	VMIDStart int               `yaml:"vmidStart"`
	Hosts     []string          `yaml:"hosts"`
	Labels    map[string]string `yaml:"labels"`
}

// Pis describes the Raspberry Pi racks.
type Pis struct {
	Image string `yaml:"image"`
	Racks []Rack `yaml:"racks"`
	// JoinServer is the join endpoint provision serves for racks that join
	// the swarm by themselves (join: self).
	JoinServer JoinServer `yaml:"joinServer"`
}

// JoinServer is where self-joining Pis exchange their ticket for the
// worker join token: https://Address:Port on the admin host, with a
// certificate from the lab CA provision keeps in its state directory.
type JoinServer struct {
	// Address is the admin host's IP address on the LAN; required when a
	// rack self-joins.
	Address string `yaml:"address"`
	Port    int    `yaml:"port"` // default 9443
	// TicketTTL is how long a ticket in a seed stays valid (a Go duration,
	// default 24h): a card must boot within it or be seeded again.
	TicketTTL string `yaml:"ticketTTL"`
}

// Rack expands into Count Pis; Nodes names a CSV of slot,serial,mac.
type Rack struct {
	Name    string            `yaml:"name"`
	Count   int               `yaml:"count"`
	Role    string            `yaml:"role"`
	Boot    string            `yaml:"boot"`
	IPStart string            `yaml:"ipStart"`
	Pattern string            `yaml:"namePattern"`
	Nodes   string            `yaml:"nodes"`
	Labels  map[string]string `yaml:"labels"`
	// Image names the image definition (images/rpi/<image>.yaml) this
	// rack's Pis boot; default pis.image.
	Image string `yaml:"image"`
	// Join is how the rack's Pis enter the swarm: push (default: provision
	// joins them over SSH) or self (each joins at first boot with the
	// ticket in its seed; provision only labels them).
	Join string `yaml:"join"`
}

// Node kinds and roles.
const (
	KindVM   = "vm"
	KindPi   = "pi"
	KindHost = "host"
	Manager  = "manager"
	Worker   = "worker"

	BootSD      = "sd"
	BootNetboot = "netboot"

	JoinPush = "push"
	JoinSelf = "self"

	DefaultJoinPort      = 9443
	DefaultJoinTicketTTL = "24h"
)

// Node is one machine after expansion: what every later stage works on.
type Node struct {
	Name   string            `json:"name"`
	Kind   string            `json:"kind"`
	Role   string            `json:"role"`
	IP     string            `json:"ip"`
	Arch   string            `json:"arch"`
	Labels map[string]string `json:"labels"`

	// VMs
	Host   string `json:"host,omitempty"`
	VMID   int    `json:"vmid,omitempty"`
	Cores  int    `json:"cores,omitempty"`
	Memory int    `json:"memory,omitempty"`
	Disk   string `json:"disk,omitempty"`

	// Pis
	Rack   string `json:"rack,omitempty"`
	Slot   int    `json:"slot,omitempty"`
	Boot   string `json:"boot,omitempty"`
	Serial string `json:"serial,omitempty"`
	MAC    string `json:"mac,omitempty"`
	Join   string `json:"join,omitempty"` // JoinSelf for a Pi that joins the swarm by itself

	// Existing hosts: how provision logs in (the inventory's ssh section
	// for VMs and Pis).
	SSHUser string `json:"sshUser,omitempty"`
	SSHPort int    `json:"sshPort,omitempty"`

	// Where the node came from, for error messages: the name's origin (the
	// group's name or the rack CSV row) and the field that gave its address.
	Source  Pos    `json:"-"`
	ipField string // e.g. proxmox.vms[1].ipStart
	field   string // e.g. proxmox.vms[1]
}

// FailureDomain is the Proxmox host of a VM or the rack of a Pi.
func (n Node) FailureDomain() string {
	switch n.Kind {
	case KindVM:
		return "host " + n.Host
	case KindHost:
		return "machine " + n.Name
	}
	return "rack " + n.Rack
}

// Pos is a place in a user file.
type Pos struct {
	File string
	Line int
}
