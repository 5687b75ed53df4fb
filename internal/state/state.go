// Package state keeps the facts provision discovers on the way (VM
// addresses, MAC→IP, swarm node IDs, image hashes) so any stage can be re-run
// alone. The file is versioned, written atomically and readable only by its
// owner. It never holds secrets.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/fhlab/provision/internal/userfile"
)

// SchemaVersion is the version of the file format this package writes.
const SchemaVersion = 1

// FileName is the state file's name inside the state directory.
const FileName = "state.json"

// State is everything provision has learnt about one lab.
type State struct {
	SchemaVersion int                   `json:"schemaVersion"`
	Lab           string                `json:"lab"`
	UpdatedAt     time.Time             `json:"updatedAt"`
	Nodes         map[string]*NodeFacts `json:"nodes"`
	Swarm         *SwarmFacts           `json:"swarm,omitempty"`
	Images        map[string]ImageFacts `json:"images,omitempty"`
	Terraform     map[string]string     `json:"terraform,omitempty"`
}

// NodeFacts are discovered facts about one node.
type NodeFacts struct {
	IP            string    `json:"ip,omitempty"`
	MAC           string    `json:"mac,omitempty"`
	SSHHostKey    string    `json:"sshHostKey,omitempty"` // public fingerprint
	DockerSocket  string    `json:"dockerSocket,omitempty"`
	SwarmNodeID   string    `json:"swarmNodeID,omitempty"`
	RenderedHash  string    `json:"renderedHash,omitempty"`
	LastSeenReady time.Time `json:"lastSeenReady,omitzero"`
}

// SwarmFacts describe the swarm the lab belongs to (no join tokens, ever).
type SwarmFacts struct {
	ClusterID       string   `json:"clusterID"`
	Managers        []string `json:"managers"`
	DefaultAddrPool []string `json:"defaultAddrPool"`
	MaskLength      int      `json:"maskLength"`
}

// ImageFacts identify a built Pi image.
type ImageFacts struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Input  string `json:"inputHash"`
}

// New returns an empty state for a lab.
func New(lab string) *State {
	return &State{SchemaVersion: SchemaVersion, Lab: lab, Nodes: map[string]*NodeFacts{}}
}

// Node returns the facts of a node, creating the entry when missing.
func (s *State) Node(name string) *NodeFacts {
	if s.Nodes == nil {
		s.Nodes = map[string]*NodeFacts{}
	}
	f, ok := s.Nodes[name]
	if !ok {
		f = &NodeFacts{}
		s.Nodes[name] = f
	}
	return f
}

// NodeNames returns the names with facts, sorted.
func (s *State) NodeNames() []string {
	out := make([]string, 0, len(s.Nodes))
	for n := range s.Nodes {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Load reads the state of a lab from dir. A missing file is an empty state;
// a file of another lab or of a newer schema is an error.
func Load(dir, lab string) (*State, error) {
	path := filepath.Join(dir, FileName)
	// The state of a lab of thousands of nodes is a few MiB.
	data, err := userfile.Read(path, 64<<20)
	if errors.Is(err, fs.ErrNotExist) {
		return New(lab), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("read state %s: not a provision state file: %w", path, err)
	}
	switch {
	case s.SchemaVersion > SchemaVersion:
		return nil, fmt.Errorf("read state %s: schema version %d is newer than this provision understands (%d): upgrade provision", path, s.SchemaVersion, SchemaVersion)
	case s.SchemaVersion < 1:
		return nil, fmt.Errorf("read state %s: no schemaVersion: not a provision state file", path)
	case s.Lab != lab:
		return nil, fmt.Errorf("read state %s: it belongs to lab %q, not %q: use another --state-dir", path, s.Lab, lab)
	}
	if s.Nodes == nil {
		s.Nodes = map[string]*NodeFacts{}
	}
	return &s, nil
}

// Save writes the state atomically: a temporary file in the same directory,
// fsynced, mode 0600, renamed over the old one, and the directory fsynced.
func (s *State) Save(dir string, now time.Time) error {
	s.SchemaVersion = SchemaVersion
	s.UpdatedAt = now.UTC()
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return WriteFileAtomic(filepath.Join(dir, FileName), append(data, '\n'), 0o600)
}

// WriteFileAtomic writes data to path so that readers see the old content
// or the new, never a mix, even if the machine stops half-way.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	done = true
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
