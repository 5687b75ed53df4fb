package render

import (
	"fmt"
	"sync"
)

// Where a node keeps the lab mirror's apt source and its signing key.
const (
	AptSourcePath  = "/etc/apt/sources.list.d/provision-mirror.sources"
	AptKeyringPath = "/etc/apt/keyrings/provision-mirror.asc"
)

// AptMirror is the lab's own apt repository (internal/mirror) as a node's
// apt sees it.
type AptMirror struct {
	URL   string // http://198.51.100.1:8081/
	Suite string // the repository's suite
	Key   []byte // its public signing key (ASCII armoured)
}

// Files are the mirror's signing key and apt source (deb822), the same
// bytes on hosts (hosts apply), VMs and Pis (their seeds' write_files).
func (m *AptMirror) Files() []SeedFile {
	return []SeedFile{
		{Path: AptKeyringPath, Mode: "0644", Content: string(m.Key)},
		{Path: AptSourcePath, Mode: "0644", Content: fmt.Sprintf(
			"# Written by provision: the lab's package mirror.\nTypes: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n",
			m.URL, m.Suite, AptKeyringPath)},
	}
}

// WithAptMirror is a renderer whose VM and Pi seeds also write the lab
// mirror's apt source and key (mirror.nodes), from load, which is called
// once, when the first seed is rendered: a command that renders no seed
// does not need the mirror built.
func (r *Renderer) WithAptMirror(load func() (*AptMirror, error)) *Renderer {
	out := &Renderer{tmpl: r.tmpl, apt: sync.OnceValues(load)}
	out.bufs.New = r.bufs.New
	return out
}
