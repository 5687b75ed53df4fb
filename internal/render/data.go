package render

import (
	"fmt"
	"net/netip"

	"github.com/fhlab/provision/internal/inventory"
)

// Data is what the templates see for one node: the inventory's sections as
// loaded (defaults filled) plus the few values derived from them. Other stages
// that write per-node files (the Pi images) build it with NewData too.
//
// The pointers point into the inventory; templates only read them.
type Data struct {
	Lab     *inventory.Lab
	Network *inventory.Network    // Lab.Network
	SSH     *inventory.SSH        // Lab.SSH
	Tuning  *inventory.HostTuning // Lab.HostTuning
	Node    *inventory.Node

	IsPi bool
	// Baked: the node boots an image with the packages and host files
	// already in it (a Pi golden image), so user-data installs nothing.
	Baked     bool
	Hostname  string // the node's name
	FQDN      string // Hostname.network.domain, or Hostname without a domain
	Address   string // the node's IP with the LAN's prefix length: 192.168.11.7/23
	Interface string // network-config id of the NIC (see Interface* constants)

	// DockerDaemon is /etc/docker/daemon.json, printed with toJSON.
	DockerDaemon DaemonConfig

	// Join is set for a node that joins the swarm by itself (its seed
	// carries a ticket); JoinFiles are then the files Render writes for it.
	Join      *JoinSeed
	JoinFiles []SeedFile

	// AptFiles are the lab mirror's apt source and key (mirror.nodes),
	// set by Render when its renderer has the mirror (WithAptMirror).
	AptFiles []SeedFile

	// InstanceID is only set for meta-data: "<lab>-<node>", stable across
	// re-renders (see instanceID).
	InstanceID string
}

// NIC ids in network-config. A NIC matched by MAC address (the Pis in rack
// CSVs) is "lan". Without a MAC the node's only NIC is matched by name, and
// cloud-init's non-netplan renderers (ENI on Debian 12, networkd) then use
// the id as the interface name, so the id is the name that NIC usually has:
// ens18 for a Proxmox VM's first virtio NIC, eth0 for a Pi's.
const (
	InterfaceByMAC = "lan"
	InterfaceVM    = "ens18"
	InterfacePi    = "eth0"
)

// DaemonConfig is the subset of /etc/docker/daemon.json provision writes.
type DaemonConfig struct {
	LogDriver           string              `json:"log-driver"`
	LogOpts             map[string]string   `json:"log-opts,omitempty"`
	DefaultAddressPools []DaemonAddressPool `json:"default-address-pools"`
}

// DaemonAddressPool is one entry of default-address-pools.
type DaemonAddressPool struct {
	Base string `json:"base"`
	Size int    `json:"size"`
}

// rotatingLogDrivers accept max-size and max-file; dockerd refuses to start
// when log-opts has options its log driver does not know.
var rotatingLogDrivers = map[string]bool{"json-file": true, "local": true}

// NewData derives the template data for node n of inv. inv must be loaded
// (defaults filled and validated), as inventory.Load returns it.
func NewData(inv *inventory.Inventory, n *inventory.Node) (*Data, error) {
	lab := &inv.Lab
	lan, err := netip.ParsePrefix(lab.Network.CIDR)
	if err != nil {
		return nil, fmt.Errorf("network.cidr %q: %w", lab.Network.CIDR, err)
	}
	ip, err := netip.ParseAddr(n.IP)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", n.IP, err)
	}
	if !lan.Contains(ip) {
		return nil, fmt.Errorf("address %s is outside network.cidr %s", ip, lan)
	}
	d := &Data{
		Lab:       lab,
		Network:   &lab.Network,
		SSH:       &lab.SSH,
		Tuning:    &lab.HostTuning,
		Node:      n,
		IsPi:      n.Kind == inventory.KindPi,
		Hostname:  n.Name,
		FQDN:      n.Name,
		Address:   netip.PrefixFrom(ip, lan.Bits()).String(),
		Interface: InterfaceVM,
	}
	if lab.Network.Domain != "" {
		d.FQDN = n.Name + "." + lab.Network.Domain
	}
	switch {
	case n.MAC != "":
		d.Interface = InterfaceByMAC
	case d.IsPi:
		d.Interface = InterfacePi
	}
	d.DockerDaemon = daemonConfig(&lab.HostTuning.Docker)
	return d, nil
}

func daemonConfig(dk *inventory.Docker) DaemonConfig {
	c := DaemonConfig{LogDriver: dk.LogDriver, DefaultAddressPools: make([]DaemonAddressPool, 0, len(dk.AddressPools))}
	if rotatingLogDrivers[dk.LogDriver] {
		// Docker wants these as JSON strings, even max-file.
		c.LogOpts = map[string]string{"max-size": dk.LogMaxSize, "max-file": fmt.Sprint(dk.LogMaxFile)}
	}
	for _, p := range dk.AddressPools {
		c.DefaultAddressPools = append(c.DefaultAddressPools, DaemonAddressPool{Base: p.Base, Size: p.Size})
	}
	return c
}
