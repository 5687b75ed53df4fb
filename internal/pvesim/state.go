package pvesim

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"
)

// Snapshot is the Sim's cluster state for saving between runs: nodes,
// storages, volumes and VMs. Users, tokens, tickets and tasks are left
// out, so a saved state never holds a secret.
type Snapshot struct {
	Nodes    []SnapshotNode   `json:"nodes"`
	Storages []Storage        `json:"storages"`
	Volumes  []SnapshotVolume `json:"volumes"`
	VMs      []SnapshotVM     `json:"vms"`
	NextID   [2]int           `json:"nextID"`
}

// SnapshotNode is a node in a Snapshot.
type SnapshotNode struct {
	Name   string        `json:"name"`
	Online bool          `json:"online"`
	Skew   time.Duration `json:"skew,omitempty"`
}

// SnapshotVolume is a volume in a Snapshot; Node is empty on shared storage.
type SnapshotVolume struct {
	Node    string `json:"node,omitempty"`
	Storage string `json:"storage"`
	VolID   string `json:"volid"`
	Size    int64  `json:"size"`
}

// SnapshotVM is a VM in a Snapshot.
type SnapshotVM struct {
	Node          string            `json:"node"`
	VMID          int               `json:"vmid"`
	Running       bool              `json:"running"`
	Config        map[string]string `json:"config"`
	Pending       map[string]string `json:"pending,omitempty"`
	PendingDelete []string          `json:"pendingDelete,omitempty"`
}

// Snapshot returns the current cluster state.
func (s *Sim) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out Snapshot
	for _, name := range s.nodeOrder {
		n := s.nodes[name]
		out.Nodes = append(out.Nodes, SnapshotNode{Name: n.name, Online: n.online, Skew: n.skew})
	}
	for _, id := range slices.Sorted(maps.Keys(s.storages)) {
		out.Storages = append(out.Storages, *s.storages[id])
	}
	for _, key := range slices.Sorted(maps.Keys(s.volumes)) {
		node, storage := "", key
		if i := strings.IndexByte(key, '/'); i >= 0 {
			node, storage = key[:i], key[i+1:]
		}
		for _, id := range slices.Sorted(maps.Keys(s.volumes[key])) {
			out.Volumes = append(out.Volumes, SnapshotVolume{Node: node, Storage: storage, VolID: id, Size: s.volumes[key][id].size})
		}
	}
	for _, id := range slices.Sorted(maps.Keys(s.vms)) {
		v := s.vms[id]
		del := slices.Sorted(maps.Keys(v.pendDel))
		out.VMs = append(out.VMs, SnapshotVM{Node: v.node, VMID: v.vmid, Running: v.running,
			Config: maps.Clone(v.conf), Pending: maps.Clone(v.pending), PendingDelete: del})
	}
	out.NextID = [2]int{s.nextLower, s.nextUpper}
	return out
}

// Restore replaces nodes, storages, volumes and VMs with a snapshot's
// (users and tokens stay). VMs with a transient lock (create, clone) are
// dropped, as a crashed task would leave them unusable.
func (s *Sim) Restore(snap Snapshot) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	nodes := map[string]*simNode{}
	var order []string
	for _, n := range snap.Nodes {
		if n.Name == "" {
			return fmt.Errorf("pvesim: restore: a node without a name")
		}
		nodes[n.Name] = &simNode{name: n.Name, online: n.Online, skew: n.Skew, boot: s.now().Add(-72 * time.Hour)}
		order = append(order, n.Name)
	}
	sort.Strings(order)
	storages := map[string]*Storage{}
	for _, st := range snap.Storages {
		st := st
		storages[st.ID] = &st
	}
	vms := map[int]*simVM{}
	for _, v := range snap.VMs {
		if nodes[v.Node] == nil {
			return fmt.Errorf("pvesim: restore: VM %d is on unknown node %q", v.VMID, v.Node)
		}
		if l := v.Config["lock"]; l == "create" || l == "clone" {
			continue
		}
		pd := map[string]bool{}
		for _, k := range v.PendingDelete {
			pd[k] = true
		}
		pending := v.Pending
		if pending == nil {
			pending = map[string]string{}
		}
		conf := v.Config
		if conf == nil {
			conf = map[string]string{}
		}
		vms[v.VMID] = &simVM{node: v.Node, vmid: v.VMID, running: v.Running, conf: conf, pending: pending,
			pendDel: pd, startedAt: s.now()}
	}
	s.nodes, s.nodeOrder, s.storages, s.vms = nodes, order, storages, vms
	s.volumes = map[string]map[string]*volume{}
	for _, v := range snap.Volumes {
		if storages[v.Storage] == nil {
			return fmt.Errorf("pvesim: restore: volume %s is on unknown storage %q", v.VolID, v.Storage)
		}
		s.putVolume(v.Node, v.Storage, v.VolID, v.Size)
	}
	if snap.NextID[1] > snap.NextID[0] {
		s.nextLower, s.nextUpper = snap.NextID[0], snap.NextID[1]
	}
	return nil
}

// MarshalSnapshot and UnmarshalSnapshot are the snapshot's file format.
func MarshalSnapshot(snap Snapshot) ([]byte, error) { return json.MarshalIndent(snap, "", "  ") }

// UnmarshalSnapshot reads a snapshot written by MarshalSnapshot.
func UnmarshalSnapshot(data []byte) (Snapshot, error) {
	var snap Snapshot
	if err := json.Unmarshal(data, &snap); err != nil {
		return Snapshot{}, fmt.Errorf("pvesim: read state: %w", err)
	}
	return snap, nil
}
