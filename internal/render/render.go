// Package render turns the inventory into each node's cloud-init seed:
// user-data, meta-data and network-config, from the text templates in
// templates/cloud-init (embedded as templates.FS).
//
// The templates are parsed once by New; rendering a node only executes them.
// Templates fail on a missing map key (missingkey=error) instead of printing
// "<no value>".
package render

import (
	"bytes"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"sync"
	"text/template"

	"github.com/fhlab/provision/internal/inventory"
)

// Dir is the directory of the cloud-init templates inside the FS given to New.
const Dir = "cloud-init"

// The seed files, by their names on the node's seed (NoCloud) and in the
// output directory.
const (
	UserData      = "user-data"
	MetaData      = "meta-data"
	NetworkConfig = "network-config"
)

// FileNames returns the seed files in the order they are written, a new
// slice each call.
func FileNames() []string { return []string{UserData, MetaData, NetworkConfig} }

// Files is one node's rendered seed.
type Files struct {
	UserData      []byte
	MetaData      []byte
	NetworkConfig []byte
	// InstanceID is the instance-id in MetaData; the Pi image stage also puts
	// it on the kernel command line (ds=nocloud;i=...).
	InstanceID string
}

// ByName maps each seed file name (user-data, ...) to its content.
func (f Files) ByName() map[string][]byte {
	return map[string][]byte{UserData: f.UserData, MetaData: f.MetaData, NetworkConfig: f.NetworkConfig}
}

// Renderer holds the parsed templates. It is safe for concurrent use.
type Renderer struct {
	tmpl *template.Template
	bufs sync.Pool                  // *bytes.Buffer, reused between nodes
	apt  func() (*AptMirror, error) // see WithAptMirror; nil: none
}

// New parses every *.tmpl file under cloud-init/ in fsys. A template is named
// by its path below cloud-init/ ("user-data.tmpl", "files/daemon.json.tmpl"),
// which is also the name `include` takes. user-data.tmpl, meta-data.tmpl and
// network-config.tmpl must exist.
func New(fsys fs.FS) (*Renderer, error) {
	sub, err := fs.Sub(fsys, Dir)
	if err != nil {
		return nil, fmt.Errorf("open templates: %w", err)
	}
	root := template.New("").Option("missingkey=error").Funcs(funcs)
	root.Funcs(template.FuncMap{
		// include renders another template to a string, so it can be piped
		// (e.g. into indent), which {{ template }} cannot.
		"include": func(name string, data any) (string, error) {
			var b strings.Builder
			err := root.ExecuteTemplate(&b, name, data)
			return b.String(), err
		},
	})
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(p) != ".tmpl" {
			return err
		}
		text, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		if _, err := root.New(p).Parse(string(text)); err != nil {
			return fmt.Errorf("parse %s/%s: %w", Dir, p, err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load templates: %w", err)
	}
	for _, name := range FileNames() {
		if root.Lookup(name+".tmpl") == nil {
			return nil, fmt.Errorf("load templates: %s/%s.tmpl is missing", Dir, name)
		}
	}
	r := &Renderer{tmpl: root}
	r.bufs.New = func() any { return new(bytes.Buffer) }
	return r, nil
}

// Node renders the seed of node n of inv. Errors name the node:
// "render pi-r1-07: ...".
func (r *Renderer) Node(inv *inventory.Inventory, n *inventory.Node) (Files, error) {
	d, err := NewData(inv, n)
	if err != nil {
		return Files{}, fmt.Errorf("render %s: %w", n.Name, err)
	}
	f, err := r.Render(d)
	if err != nil {
		return Files{}, fmt.Errorf("render %s: %w", n.Name, err)
	}
	return f, nil
}

// Render executes the templates on d: user-data and network-config first,
// then meta-data with d.InstanceID set to "<lab>-<node>". d.InstanceID is
// overwritten.
func (r *Renderer) Render(d *Data) (Files, error) {
	var f Files
	var err error
	if d.JoinFiles, err = r.JoinFiles(d); err != nil {
		return Files{}, err
	}
	if r.apt != nil && d.Node.Kind != inventory.KindHost {
		m, err := r.apt()
		if err != nil {
			return Files{}, err
		}
		d.AptFiles = m.Files()
	}
	if f.UserData, err = r.execute(UserData, d); err != nil {
		return Files{}, err
	}
	if f.NetworkConfig, err = r.execute(NetworkConfig, d); err != nil {
		return Files{}, err
	}
	f.InstanceID = instanceID(d.Lab.Metadata.Name, d.Node.Name)
	d.InstanceID = f.InstanceID
	if f.MetaData, err = r.execute(MetaData, d); err != nil {
		return Files{}, err
	}
	return f, nil
}

func (r *Renderer) execute(name string, d *Data) ([]byte, error) {
	b := r.bufs.Get().(*bytes.Buffer)
	defer r.bufs.Put(b)
	b.Reset()
	if err := r.tmpl.ExecuteTemplate(b, name+".tmpl", d); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return bytes.Clone(b.Bytes()), nil
}

// instanceID is "<lab>-<node>": stable, so a seed rendered again with other
// content is not a new cloud-init instance. A new instance would regenerate
// the node's SSH host keys (which provision refuses as changed keys) and
// re-run runcmd on a live swarm node. New machines (a VM cloned again, a Pi
// flashed again) have no cloud-init state and run the seed anyway.
func instanceID(lab, node string) string { return lab + "-" + node }
