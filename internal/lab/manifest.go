package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"

	"github.com/fhlab/provision/internal/state"
)

// ManifestFile is the name of the manifest in a lab's state directory.
const ManifestFile = "manifest.json"

const manifestVersion = 1

// Manifest records everything a lab made, so Down can remove it after a
// crash, and the facts later stages need about each node. It is written
// before anything it names is created.
type Manifest struct {
	Version  int    `json:"version"`
	Prefix   string `json:"prefix"`
	StateDir string `json:"stateDir"`
	DataDir  string `json:"dataDir"`
	Bridge   string `json:"bridge"`
	Network  string `json:"network"`
	Gateway  string `json:"gateway"`

	SSHUser string `json:"sshUser"`
	// SSHGroup owns every node's docker socket; the SSH user is in it.
	SSHGroup string `json:"sshGroup"`
	// CreatedUser is true when this lab created SSHUser (Down removes it).
	CreatedUser bool `json:"createdUser"`
	// ForwardRule is true when an iptables FORWARD rule was inserted so that
	// the bridge forwards despite a DROP policy on the host.
	ForwardRule bool `json:"forwardRule,omitempty"`

	Nodes []Node `json:"nodes"`
}

// Node is what the lab knows about one emulated node: where its parts are
// and what a client needs to reach and trust it.
type Node struct {
	Name string     `json:"name"`
	IP   netip.Addr `json:"ip"`
	// Netns is the network namespace's name (/run/netns/<Netns>).
	Netns string `json:"netns"`
	// Veth is the host side of the node's veth pair, on the lab bridge.
	Veth string `json:"veth"`
	// Dir holds the node's sockets, keys, logs and dockerd's exec root.
	Dir string `json:"dir"`
	// DataRoot is the node's docker --data-root.
	DataRoot string `json:"dataRoot"`
	// UTS is the bind mount keeping the node's UTS namespace (hostname).
	UTS string `json:"uts"`
	// DockerSocket is the node's Engine API socket on this machine; inside
	// an SSH session on the node it is DOCKER_HOST (unix://DockerSocket),
	// and the swarm stage reaches it through SSH streamlocal forwarding.
	DockerSocket string `json:"dockerSocket"`
	// SSHAddr is the node's sshd, "<ip>:22".
	SSHAddr string `json:"sshAddr"`
	// HostKey is the node's public SSH host key in authorized_keys format,
	// HostKeyFingerprint its SHA256 fingerprint as ssh-keygen -l prints it.
	HostKey            string `json:"hostKey"`
	HostKeyFingerprint string `json:"hostKeyFingerprint"`
	// Netboot: the node's system starts when Boot has netbooted it.
	Netboot bool `json:"netboot,omitempty"`
	// Manager: its daemons run at a higher CPU priority.
	Manager bool `json:"manager,omitempty"`
}

// DockerHost is the node's socket as a DOCKER_HOST value.
func (n Node) DockerHost() string { return "unix://" + n.DockerSocket }

// WaitingForBoot reports whether the node is a netboot Pi whose system
// Boot has not started yet (its UTS namespace, made with the hostname it
// booted with, is missing).
func (n Node) WaitingForBoot() bool { return n.Netboot && !isNsfs(n.UTS) }

// NetnsPath is the node's network namespace file.
func (n Node) NetnsPath() string { return filepath.Join(netnsDir, n.Netns) }

// loadManifest reads a manifest; a missing file is (nil, nil).
func loadManifest(path string) (*Manifest, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read lab manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("read lab manifest %s: %w", path, err)
	}
	if m.Version != manifestVersion {
		return nil, fmt.Errorf("read lab manifest %s: version %d, this provision reads %d", path, m.Version, manifestVersion)
	}
	return &m, nil
}

// save writes the manifest atomically with mode 0600.
func (m *Manifest) save(path string) error {
	sort.Slice(m.Nodes, func(i, j int) bool { return m.Nodes[i].IP.Less(m.Nodes[j].IP) })
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("write lab manifest: %w", err)
	}
	if err := state.WriteFileAtomic(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("write lab manifest: %w", err)
	}
	return nil
}

// node returns the manifest's node of that name.
func (m *Manifest) node(name string) (Node, bool) {
	for _, n := range m.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// setNode replaces the manifest's node of n's name.
func (m *Manifest) setNode(n Node) {
	for i := range m.Nodes {
		if m.Nodes[i].Name == n.Name {
			m.Nodes[i] = n
		}
	}
}
