package render

import (
	"fmt"
	"io/fs"
	"sort"
	"strconv"

	"gopkg.in/yaml.v3"

	"github.com/fhlab/provision/internal/inventory"
)

// HostFile is one file of the host tuning as a node gets it: the same path,
// mode and content that user-data writes (write_files), so that an image
// can carry the files baked in instead of cloud-init writing them.
type HostFile struct {
	Path    string      // absolute path on the node: /etc/sysctl.d/90-provision-swarm.conf
	Mode    fs.FileMode // permission bits
	Content []byte
}

// HostFiles renders the tuning files every node of the given kind
// (inventory.KindVM or inventory.KindPi) of inv gets. They are taken from
// the write_files of user-data.tmpl rendered for such a node, so there is
// one list of files: the template's. The files do not depend on the node
// (only on the lab's settings), which HostFiles checks by comparing
// two nodes. Sorted by path.
func (r *Renderer) HostFiles(inv *inventory.Inventory, kind string) ([]HostFile, error) {
	d, err := r.hostData(inv, kind, "host-a")
	if err != nil {
		return nil, err
	}
	files, err := r.hostFiles(d)
	if err != nil {
		return nil, err
	}
	// A template that printed the node's name into a baked file would give
	// every Pi the same, wrong value: refuse rather than bake it.
	other, err := r.hostData(inv, kind, "host-b")
	if err != nil {
		return nil, err
	}
	files2, err := r.hostFiles(other)
	if err != nil {
		return nil, err
	}
	for i := range files {
		if i >= len(files2) || files[i].Path != files2[i].Path || string(files[i].Content) != string(files2[i].Content) {
			return nil, fmt.Errorf("host files: %s differs between nodes; only per-lab settings can be baked into an image", files[i].Path)
		}
	}
	return files, nil
}

func (r *Renderer) hostData(inv *inventory.Inventory, kind, name string) (*Data, error) {
	n := &inventory.Node{Name: name, Kind: kind, Role: inventory.Worker, IP: inv.Lab.Network.Gateway}
	if kind == inventory.KindPi {
		n.Arch = "arm64"
	}
	d, err := NewData(inv, n)
	if err != nil {
		return nil, fmt.Errorf("host files: %w", err)
	}
	return d, nil
}

func (r *Renderer) hostFiles(d *Data) ([]HostFile, error) {
	ud, err := r.execute(UserData, d)
	if err != nil {
		return nil, fmt.Errorf("host files: %w", err)
	}
	var doc struct {
		WriteFiles []struct {
			Path        string `yaml:"path"`
			Permissions string `yaml:"permissions"`
			Content     string `yaml:"content"`
		} `yaml:"write_files"`
	}
	if err := yaml.Unmarshal(ud, &doc); err != nil {
		return nil, fmt.Errorf("host files: user-data is not YAML: %w", err)
	}
	out := make([]HostFile, 0, len(doc.WriteFiles))
	for _, f := range doc.WriteFiles {
		mode, err := strconv.ParseUint(f.Permissions, 8, 32)
		if err != nil || mode > 0o7777 {
			return nil, fmt.Errorf("host files: %s: permissions %q is not an octal mode", f.Path, f.Permissions)
		}
		out = append(out, HostFile{Path: f.Path, Mode: fs.FileMode(mode), Content: []byte(f.Content)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}
